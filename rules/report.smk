# Report stage: the resolved configuration, the paper's tables and its figures, from the results.


# snakemake --cores 1 results/default/config.yaml
rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{LOGS}/config.log",
    conda:
        "../environment.yml"
    params:
        text=yaml.safe_dump(config, sort_keys=False),
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"


# snakemake --cores 1 results/default/tables/students.csv
rule students_table:
    input:
        metrics=[*TEACHER_METRICS, *student_metrics(STUDENT_METHODS)],
        latency=students_latency_files(),
    output:
        f"{RESULTS}/tables/students.csv",
    log:
        f"{LOGS}/tables/students.log",
    conda:
        "../environment.yml"
    params:
        latency=lambda wc, input: " ".join(f"--latency {path}" for path in input.latency),
    shell:
        "blockswap report students {input.metrics} {params.latency} --csv {output} > {log} 2>&1"


# Table 2 (CIFAR) or Table 3 (ImageNet): one row per network, the paper's values beside ours.
# snakemake --cores 1 results/default/tables/table2.md
rule paper_table:
    input:
        rules.students_table.output[0],
    output:
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        f"{LOGS}/tables/{{table}}.log",
    wildcard_constraints:
        table="table2|table3|samples",
    conda:
        "../environment.yml"
    params:
        notes=" ".join(f"--note {shlex.quote(n)}" for n in NOTES),
    shell:
        "blockswap report {wildcards.table} {input} {params.notes} "
        "--csv {output.csv} --md {output.md} --tex {output.tex} > {log} 2>&1"


# snakemake --cores 1 results/default/tables/correlation.md
rule correlation:
    input:
        students=rules.students_table.output[0],
        proxies=list(PROXY_FILES.values()),
    output:
        csv=f"{RESULTS}/tables/correlation.csv",
        md=f"{RESULTS}/tables/correlation.md",
    log:
        f"{LOGS}/tables/correlation.log",
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap report correlation {input.students} {params.proxies} "
        "--csv {output.csv} --md {output.md} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/pareto.png
rule figure_from_students:
    input:
        rules.students_table.output[0],
    output:
        png=report(f"{RESULTS}/figures/{{figure}}.png", caption="../report/students_figures.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/{{figure}}.pdf",
    log:
        f"{LOGS}/figures/{{figure}}.log",
    wildcard_constraints:
        figure="pareto|random_students",
    conda:
        "../environment.yml"
    shell:
        "blockswap figure {wildcards.figure} {input} --out {output.png} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/fisher_vs_error.png
rule figure_fisher_vs_error:
    input:
        students=rules.students_table.output[0],
        proxies=list(PROXY_FILES.values()),
    output:
        png=report(
            f"{RESULTS}/figures/fisher_vs_error.png", caption="../report/fisher_vs_error.rst", category="Figures"
        ),
        pdf=f"{RESULTS}/figures/fisher_vs_error.pdf",
    log:
        f"{LOGS}/figures/fisher_vs_error.log",
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap figure fisher_vs_error {input.students} {params.proxies} --out {output.png} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/search_60000.png
rule figure_search:
    input:
        scores=SCORE_SHARDS,
        student=f"{RESULTS}/search/{{budget}}/student.json",
    output:
        png=report(f"{RESULTS}/figures/search_{{budget}}.png", caption="../report/search.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/search_{{budget}}.pdf",
    log:
        f"{LOGS}/figures/search_{{budget}}.log",
    conda:
        "../environment.yml"
    shell:
        "blockswap figure search {input.scores} --student {input.student} --out {output.png} > {log} 2>&1"


# The proxy shoot-out's rank stability: Kendall tau between scorings under different seeds, top-1 agreement.
# snakemake --cores 1 results/default/tables/stability.md
rule stability_table:
    input:
        STABILITY_FILES,
    output:
        csv=f"{RESULTS}/tables/stability.csv",
        md=f"{RESULTS}/tables/stability.md",
    log:
        f"{LOGS}/tables/stability.log",
    conda:
        "../environment.yml"
    params:
        scorings=lambda wc, input: " ".join(f"--proxies {Path(p).parent.parent.name}={p}" for p in input),
    shell:
        "blockswap report stability {input} {params.scorings} --csv {output.csv} --md {output.md} > {log} 2>&1"


# Seconds per candidate of each proxy, from the ablation's scores.
# snakemake --cores 1 results/default/tables/proxy_costs.md
rule proxy_costs_table:
    input:
        list(PROXY_FILES.values()),
    output:
        csv=f"{RESULTS}/tables/proxy_costs.csv",
        md=f"{RESULTS}/tables/proxy_costs.md",
    log:
        f"{LOGS}/tables/proxy_costs.log",
    conda:
        "../environment.yml"
    shell:
        "blockswap report proxy_costs {input} --csv {output.csv} --md {output.md} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/forest.png
rule figure_forest:
    input:
        rules.correlation.output.csv,
    output:
        png=report(f"{RESULTS}/figures/forest.png", caption="../report/forest.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/forest.pdf",
    log:
        f"{LOGS}/figures/forest.log",
    conda:
        "../environment.yml"
    shell:
        "blockswap figure forest {input} --out {output.png} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/proxy_scatter.png
rule figure_proxy_scatter:
    input:
        students=rules.students_table.output[0],
        correlation=rules.correlation.output.csv,
        proxies=list(PROXY_FILES.values()),
    output:
        png=report(f"{RESULTS}/figures/proxy_scatter.png", caption="../report/proxy_scatter.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/proxy_scatter.pdf",
    log:
        f"{LOGS}/figures/proxy_scatter.log",
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap figure proxy_scatter {input.students} --correlation {input.correlation} {params.proxies} "
        "--out {output.png} > {log} 2>&1"
