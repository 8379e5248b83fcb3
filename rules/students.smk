# Student stage: every student (BlockSwap, Moonshine, reduced, SNIP, best-of-N, random) distilled from
# its teachers with attention transfer. Resumable: a killed job continues from its last epoch when rerun.


# snakemake --cores 2 results/default/students/moonshine-b2/seed-0/metrics.json
rule train_student:
    input:
        teacher=f"{RESULTS}/teachers/seed-{{seed}}/metrics.json",
        weights=teacher_inputs,
        genotype=genotype_input,
    output:
        model=f"{RESULTS}/students/{{network}}/seed-{{seed}}/model.pt",
        metrics=f"{RESULTS}/students/{{network}}/seed-{{seed}}/metrics.json",
        history=f"{RESULTS}/students/{{network}}/seed-{{seed}}/history.csv",
    log:
        f"{LOGS}/students/{{network}}/seed-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/students/{{network}}/seed-{{seed}}.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=8000,
    params:
        arch=lambda wc: PLANS[wc.network].arch,
        genotype=lambda wc: PLANS[wc.network].genotype,
        tags=lambda wc: plan_tags(wc.network),
        data=data_args(),
        training=lambda wc: training_args(wc.network),
        distillation=lambda wc: distillation_args(wc.network),
        teacher=lambda wc: teacher_arg(wc.seed),
        out=lambda wc, output: str(Path(output.metrics).parent),
    shell:
        "blockswap train --arch {params.arch} --genotype {params.genotype:q} {params.data} "
        "{params.training} {params.distillation} --teacher {params.teacher:q} --seed {wildcards.seed} "
        "{params.tags} --quiet --out {params.out} > {log} 2>&1"
