# Data stage: load (and optionally download) the dataset once, record its splits and statistics.


# snakemake --cores 1 results/default/data/summary.json
rule data:
    output:
        f"{RESULTS}/data/summary.json",
    log:
        f"{LOGS}/data.log",
    conda:
        "../environment.yml"
    params:
        dataset=config["dataset"],
        data_dir=config["data_dir"],
        image_size=image_size_arg(),
        download="--download" if config["download"] else "",
    shell:
        "blockswap data --dataset {params.dataset} --data-dir {params.data_dir:q} "
        "{params.image_size} {params.download} --out {output} > {log} 2>&1"
