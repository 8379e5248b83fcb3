# Cost stage: exact params / MACs / paper ops of every network of the run, from its genotype alone.


# snakemake --cores 1 results/default/costs/teacher.json
rule cost:
    input:
        genotype_input,
    output:
        f"{RESULTS}/costs/{{network}}.json",
    log:
        f"{LOGS}/costs/{{network}}.log",
    benchmark:
        f"{BENCHMARKS}/costs/{{network}}.tsv"
    conda:
        "../environment.yml"
    params:
        method=lambda wc: PLANS[wc.network].method,
        arch=lambda wc: PLANS[wc.network].arch,
        genotype=lambda wc: PLANS[wc.network].genotype,
        data=commands.data_args(config),
    shell:
        "blockswap cost --arch {params.arch} --genotype {params.genotype:q} "
        "{params.data} "
        "--name {wildcards.network} --method {params.method} --out {output} > {log} 2>&1"


# snakemake --cores 2 results/default/tables/costs.csv
rule cost_table:
    input:
        expand(f"{RESULTS}/costs/{{network}}.json", network=COSTED),
    output:
        csv=f"{RESULTS}/tables/costs.csv",
        md=f"{RESULTS}/tables/costs.md",
    log:
        f"{LOGS}/tables/costs.log",
    benchmark:
        f"{BENCHMARKS}/tables/costs.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap report costs {input} --csv {output.csv} --md {output.md} > {log} 2>&1"
