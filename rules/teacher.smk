# Teacher stage: one teacher per seed, trained from scratch with the paper's protocol.


# snakemake --cores 2 results/default/teachers/seed-0/metrics.json
rule train_teacher:
    input:
        data=rules.data.output[0],
    output:
        model=f"{RESULTS}/teachers/seed-{{seed}}/model.pt",
        metrics=f"{RESULTS}/teachers/seed-{{seed}}/metrics.json",
        history=f"{RESULTS}/teachers/seed-{{seed}}/history.csv",
    log:
        f"{LOGS}/teachers/seed-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/teachers/seed-{{seed}}.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=8000,
    params:
        arch=config["teacher"]["arch"],
        data=data_args(),
        training=training_args(),
        out=lambda wc: f"{RESULTS}/teachers/seed-{wc.seed}",
    shell:
        "blockswap train --arch {params.arch} {params.data} {params.training} --seed {wildcards.seed} "
        "--tag method=teacher --tag network=teacher --quiet --out {params.out} > {log} 2>&1"
