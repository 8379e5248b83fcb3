# Student stage: every student (BlockSwap, Moonshine, reduced, SNIP, best-of-N, random) distilled from
# its teachers with attention transfer. Resumable: a killed job continues from its last epoch when rerun.


# snakemake --cores 2 results/default/students/moonshine-b2/seed-0/metrics.json
rule train_student:
    input:
        teacher=lambda wc: teacher_files(wc.network, wc.seed),
        genotype=genotype_input,
    output:
        model=f"{RESULTS}/students/{{network}}/seed-{{seed}}/model.pt",
        metrics=f"{RESULTS}/students/{{network}}/seed-{{seed}}/metrics.json",
        history=f"{RESULTS}/students/{{network}}/seed-{{seed}}/history.csv",
    log:
        f"{LOGS}/students/{{network}}/seed-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/students/{{network}}/seed-{{seed}}.tsv"
    wildcard_constraints:
        network="|".join(re.escape(n) for n in ALONE) or "(?!)",  # the others train in lockstep (below)
    conda:
        "../environment.yml"
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=8000,
    params:
        arch=lambda wc: PLANS[wc.network].arch,
        genotype=lambda wc: PLANS[wc.network].genotype,
        tags=lambda wc: commands.plan_tags(PLANS[wc.network]),
        data=commands.data_args(config),
        training=lambda wc: commands.training_args(config, PLANS[wc.network].method),
        distillation=lambda wc: commands.distillation_args(config, PLANS[wc.network]),
        teacher=lambda wc: teacher_arg(wc.seed, wc.network),
        out=lambda wc, output: str(Path(output.metrics).parent),
    shell:
        "blockswap train --arch {params.arch} --genotype {params.genotype:q} {params.data} "
        "{params.training} {params.distillation} --teacher {params.teacher:q} --seed {wildcards.seed} "
        "{params.tags} --quiet --out {params.out} > {log} 2>&1"


# Random students of one budget and seed trained together, ablation.lockstep per job: one process,
# the same minibatches, the teacher's outputs computed once per step; each student keeps its own
# folder, checkpoint and results, with the numbers of training it alone. A missing student reruns
# its whole group (with the same numbers); `blockswap train` with the group's options and that one
# --out retrains it by itself.
# snakemake --cores 2 results/default/students/random-60000-0/seed-0/metrics.json
for group, members in LOCKSTEP.items():

    rule:
        name:
            group
        input:
            teacher=lambda wc, members=members: teacher_files(members[0], wc.seed),
            genotypes=[PLANS[n].genotype for n in members],
        output:
            models=[f"{RESULTS}/students/{n}/seed-{{seed}}/model.pt" for n in members],
            metrics=[f"{RESULTS}/students/{n}/seed-{{seed}}/metrics.json" for n in members],
            histories=[f"{RESULTS}/students/{n}/seed-{{seed}}/history.csv" for n in members],
        log:
            f"{LOGS}/students/{group}/seed-{{seed}}.log",
        benchmark:
            f"{BENCHMARKS}/students/{group}/seed-{{seed}}.tsv"
        conda:
            "../environment.yml"
        resources:
            gpu=1,
            mem_mb=8000,
        params:
            arch=PLANS[members[0]].arch,
            genotypes=" ".join(shlex.quote(PLANS[n].genotype) for n in members),
            tags=commands.lockstep_tags([PLANS[n] for n in members]),
            data=commands.data_args(config),
            training=commands.training_args(config, PLANS[members[0]].method),
            distillation=commands.distillation_args(config, PLANS[members[0]]),
            teacher=lambda wc, members=members: teacher_arg(wc.seed, members[0]),
            outs=lambda wc, output: " ".join(shlex.quote(str(Path(m).parent)) for m in output.metrics),
        shell:
            "blockswap train --arch {params.arch} --genotype {params.genotypes} {params.data} "
            "{params.training} {params.distillation} --teacher {params.teacher:q} --seed {wildcards.seed} "
            "{params.tags} --quiet --out {params.outs} > {log} 2>&1"
