# Guided search against random sampling (docs/evolution.md): per compared budget and search
# seed, a random and an evolution history with the same number of proxy evaluations (one job each,
# checkpointed after every evaluation: a killed job resumes); their winners and random's best-of-N
# trained as students; tables and a figure. Target: snakemake --cores 2 compare


# snakemake --cores 1 results/default/compare/60000/evolution/seed-0/history.csv
rule search_history:
    input:
        data=rules.data.output[0],
    output:
        f"{RESULTS}/compare/{{budget}}/{{method}}/seed-{{seed}}/history.csv",
    log:
        f"{LOGS}/compare/{{budget}}/{{method}}-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/compare/{{budget}}/{{method}}-{{seed}}.tsv"
    wildcard_constraints:
        method="random|evolution",
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        args=commands.guided_search_args(config),
        samples=COMPARE_SAMPLES,
    shell:
        "blockswap search --method {wildcards.method} --budget {wildcards.budget} --samples {params.samples} "
        "--seed {wildcards.seed} {params.args} --out {output} > {log} 2>&1"


# snakemake --cores 1 results/default/compare/60000/evolution/seed-0/student.json
rule history_winner:
    input:
        f"{RESULTS}/compare/{{budget}}/{{method}}/seed-{{seed}}/history.csv",
    output:
        f"{RESULTS}/compare/{{budget}}/{{method}}/seed-{{seed}}/student.json",
    log:
        f"{LOGS}/compare/{{budget}}/{{method}}-{{seed}}-winner.log",
    benchmark:
        f"{BENCHMARKS}/compare/{{budget}}/{{method}}-{{seed}}-winner.tsv"
    wildcard_constraints:
        method="random|evolution",
    conda:
        "../environment.yml"
    shell:
        "blockswap best {input} --out {output} > {log} 2>&1"


# Best-of-N over seeds: the proxy-best of the first N candidates of a random history.
# snakemake --cores 1 results/default/compare/60000/random/seed-0/bestof-10.json
rule history_bestof:
    input:
        f"{RESULTS}/compare/{{budget}}/random/seed-{{seed}}/history.csv",
    output:
        f"{RESULTS}/compare/{{budget}}/random/seed-{{seed}}/bestof-{{n}}.json",
    log:
        f"{LOGS}/compare/{{budget}}/random-{{seed}}-bestof-{{n}}.log",
    benchmark:
        f"{BENCHMARKS}/compare/{{budget}}/random-{{seed}}-bestof-{{n}}.tsv"
    wildcard_constraints:
        n="[0-9]+",
    conda:
        "../environment.yml"
    shell:
        "blockswap best {input} --first {wildcards.n} --out {output} > {log} 2>&1"


# snakemake --cores 2 results/default/tables/search_curves.md
rule search_curves_table:
    input:
        HISTORIES,
    output:
        csv=f"{RESULTS}/tables/search_curves.csv",
        md=f"{RESULTS}/tables/search_curves.md",
    log:
        f"{LOGS}/tables/search_curves.log",
    benchmark:
        f"{BENCHMARKS}/tables/search_curves.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap report search_curves {input} --csv {output.csv} --md {output.md} > {log} 2>&1"


# snakemake --cores 2 results/default/figures/search_curves.png
rule search_curves_figure:
    input:
        HISTORIES,
    output:
        png=f"{RESULTS}/figures/search_curves.png",
        pdf=f"{RESULTS}/figures/search_curves.pdf",
    log:
        f"{LOGS}/figures/search_curves.log",
    benchmark:
        f"{BENCHMARKS}/figures/search_curves.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap figure search_curves {input} --out {output.png} > {log} 2>&1"


# The comparison's students (winners and best-of-N), in a table of their own.
rule comparison_students:
    input:
        student_metrics(COMPARISON_METHODS),
    output:
        f"{RESULTS}/tables/comparison_students.csv",
    log:
        f"{LOGS}/tables/comparison_students.log",
    benchmark:
        f"{BENCHMARKS}/tables/comparison_students.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap report students {input} --csv {output} > {log} 2>&1"


# snakemake --cores 2 results/default/tables/search_winners.md   (or bestof_seeds.md)
rule comparison_table:
    input:
        rules.comparison_students.output[0],
    output:
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
    log:
        f"{LOGS}/tables/{{table}}.log",
    benchmark:
        f"{BENCHMARKS}/tables/{{table}}.tsv"
    wildcard_constraints:
        table="search_winners|bestof_seeds",
    conda:
        "../environment.yml"
    shell:
        "blockswap report {wildcards.table} {input} --csv {output.csv} --md {output.md} > {log} 2>&1"
