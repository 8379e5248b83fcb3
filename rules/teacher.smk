# Teacher stage: one teacher per seed, trained from scratch with the paper's protocol; or, with
# teacher.pretrained (the paper's ImageNet protocol), torchvision's pretrained network, evaluated once.


if PRETRAINED:

    # snakemake --cores 1 results/paper-imagenet/teachers/seed-0/metrics.json
    rule pretrained_teacher:
        input:
            data=rules.data.output[0],
            weights=teacher_weights(),
        output:
            metrics=f"{RESULTS}/teachers/seed-{{seed}}/metrics.json",
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
            spec=PRETRAINED,
            data=commands.data_args(config),
        shell:
            "blockswap evaluate {params.spec:q} {params.data} --out {output.metrics} > {log} 2>&1"

else:

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
        # Every student waits for its teacher: start the teachers before any other ready job.
        priority: 10
        conda:
            "../environment.yml"
        resources:
            gpu=config["training"]["gpus"],
            mem_mb=8000,
        params:
            arch=config["teacher"]["arch"],
            data=commands.data_args(config),
            training=commands.training_args(config),
            out=lambda wc, output: str(Path(output.metrics).parent),
        shell:
            "blockswap train --arch {params.arch} {params.data} {params.training} --seed {wildcards.seed} "
            "--tag method=teacher --tag network=teacher --quiet --out {params.out} > {log} 2>&1"
