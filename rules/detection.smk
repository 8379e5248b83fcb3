# Detection stage (Table 4, dataset coco): the Fisher search of a Mask R-CNN backbone on COCO
# images, then both backbones (the single-blocktype reference and the searched one) trained from
# scratch and evaluated with COCOeval. Training is resumable per epoch.

DETECTION = f"{RESULTS}/detection"
if config["detection"]["min_size"] > config["detection"]["max_size"]:
    sys.exit("blockswap: config error: detection.min_size is more than detection.max_size")
DETECTION_ROWS = {"resnet34-gn": "moonshine", "blockswap": "blockswap"}  # folder -> Table 4 row


def detection_args():
    d = config["detection"]
    return f"--data-dir {shlex.quote(config['data_dir'])} --min-size {d['min_size']} --max-size {d['max_size']}"


def detection_genotype(wildcards):
    """The searched backbone's JSON is an input of its training; the reference is a block name."""
    return [f"{DETECTION}/search/student.json"] if wildcards.backbone == "blockswap" else []


def detection_training_args():
    d = config["detection"]
    args = (
        f"--arch {d['arch']} --epochs {d['epochs']} --batch-size {d['batch_size']} --seed {d['seed']} "
        f"--milestones {','.join(str(m) for m in d['milestones']) or ','} --warmup-iters {d['warmup_iters']} "
        f"--nproc {d['gpus']}"
    )
    args += f" --lr {d['lr']}" if d["lr"] is not None else ""
    return args + (f" --limit {d['train_limit']}" if d["train_limit"] is not None else "")


def detection_outputs():
    return [
        f"{RESULTS}/config.yaml",
        f"{DETECTION}/search/candidates.csv",
        f"{DETECTION}/search/student.json",
        *expand(f"{DETECTION}/{{backbone}}/metrics.json", backbone=DETECTION_ROWS),
        *expand(f"{RESULTS}/tables/table4.{{ext}}", ext=["csv", "md", "tex"]),
    ]


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
        data=detection_args(),
        d=config["detection"],
        budget=lambda wc: "" if config["detection"]["budget"] is None else f"--budget {config['detection']['budget']}",
        limit=lambda wc: (
            "" if config["detection"]["train_limit"] is None else f"--limit {config['detection']['train_limit']}"
        ),
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
        data=detection_args(),
        training=detection_training_args(),
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
    wildcard_constraints:
        backbone="|".join(DETECTION_ROWS),
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        limit="" if config["detection"]["val_limit"] is None else f"--limit {config['detection']['val_limit']}",
        method=lambda wc: DETECTION_ROWS[wc.backbone],
    shell:
        "blockswap detection evaluate --data-dir {config[data_dir]:q} --model {input} {params.limit} "
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
    conda:
        "../environment.yml"
    shell:
        "blockswap detection table {input} --out {output.csv} > {log} 2>&1"
