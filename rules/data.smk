# Data stage: load (and optionally download) the dataset once, record its splits and statistics.


# snakemake --cores 1 results/default/data/summary.json
rule data:
    output:
        f"{RESULTS}/data/summary.json",
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCHMARKS}/data.tsv"
    conda:
        "../environment.yml"
    params:
        data=commands.data_args(config, download=True),
    shell:
        "blockswap data {params.data} --out {output} > {log} 2>&1"
