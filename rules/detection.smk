# Detection stage (Table 4, dataset coco): the Fisher search of a Mask R-CNN backbone on COCO
# images, then both backbones (the single-blocktype reference and the searched one) trained from
# scratch and evaluated with COCOeval. Training is resumable per epoch.


# snakemake --cores 1 results/paper-coco/detection/search/student.json --configfile config/paper-coco.yaml
rule detection_search:
    output:
        student=f"{DETECTION}/search/student.json",
        candidates=f"{DETECTION}/search/candidates.csv",
    log:
        f"{LOGS}/detection/search.log",
    benchmark:
        f"{BENCHMARKS}/detection/search.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        data=commands.detection_args(config),
        d=config["detection"],
        budget=commands.optional_arg("--budget", config["detection"]["budget"]),
        limit=commands.optional_arg("--limit", config["detection"]["train_limit"]),
    shell:
        "blockswap detection search {params.data} --arch {params.d[arch]} --reference {params.d[reference]:q} "
        "{params.budget} --candidates {params.d[candidates]} --samples {params.d[samples]} "
        "--tolerance {params.d[tolerance]} --batch-size {params.d[search_batch_size]} --seed {params.d[seed]} "
        "{params.limit} --candidates-out {output.candidates} --out {output.student} > {log} 2>&1"


# snakemake --cores 1 results/paper-coco/detection/resnet34-gn/model.pt --configfile config/paper-coco.yaml
rule detection_train:
    input:
        detection_genotype,
    output:
        f"{DETECTION}/{{backbone}}/model.pt",
    log:
        f"{LOGS}/detection/{{backbone}}/train.log",
    benchmark:
        f"{BENCHMARKS}/detection/{{backbone}}/train.tsv"
    wildcard_constraints:
        backbone="|".join(DETECTION_ROWS),
    conda:
        "../environment.yml"
    resources:
        gpu=config["detection"]["gpus"],
        mem_mb=32000,
    params:
        data=commands.detection_args(config),
        training=commands.detection_training_args(config),
        genotype=lambda wc, input: input[0] if input else config["detection"]["reference"],
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "blockswap detection train {params.data} {params.training} --genotype {params.genotype:q} "
        "--out {params.out} > {log} 2>&1"


# snakemake --cores 1 results/paper-coco/detection/blockswap/metrics.json --configfile config/paper-coco.yaml
rule detection_evaluate:
    input:
        f"{DETECTION}/{{backbone}}/model.pt",
    output:
        f"{DETECTION}/{{backbone}}/metrics.json",
    log:
        f"{LOGS}/detection/{{backbone}}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/detection/{{backbone}}/evaluate.tsv"
    wildcard_constraints:
        backbone="|".join(DETECTION_ROWS),
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        data_dir=config["data_dir"],
        limit=commands.optional_arg("--limit", config["detection"]["val_limit"]),
        method=lambda wc: DETECTION_ROWS[wc.backbone],
    shell:
        "blockswap detection evaluate --data-dir={params.data_dir:q} --model {input} {params.limit} "
        "--tag method={params.method} --tag backbone={wildcards.backbone} --out {output} > {log} 2>&1"


# Table 4: both backbones' COCO APs, the paper's beside them.
# snakemake --cores 1 results/paper-coco/tables/table4.md --configfile config/paper-coco.yaml
rule detection_table:
    input:
        expand(f"{DETECTION}/{{backbone}}/metrics.json", backbone=DETECTION_ROWS),
    output:
        csv=f"{RESULTS}/tables/table4.csv",
        md=f"{RESULTS}/tables/table4.md",
        tex=f"{RESULTS}/tables/table4.tex",
    log:
        f"{LOGS}/tables/table4.log",
    benchmark:
        f"{BENCHMARKS}/tables/table4.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap report table4 {input} --csv {output.csv} --md {output.md} --tex {output.tex} > {log} 2>&1"
