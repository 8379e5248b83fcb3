# Report stage: the resolved configuration, the paper's tables and its figures, from the results.


# snakemake --cores 1 results/default/config.yaml
rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{LOGS}/config.log",
    benchmark:
        f"{BENCHMARKS}/config.tsv"
    conda:
        "../environment.yml"
    params:
        text=CONFIG_TEXT,
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"


# snakemake --cores 1 results/default/tables/students.csv
rule students_table:
    input:
        metrics=[*TEACHER_METRICS, *student_metrics(STUDENT_METHODS)],
        latency=outputs.students_latency_files(config, PLANS, RESULTS, PRETRAINED),
        data=rules.data.output[0],  # its training split: the images/s column
    output:
        f"{RESULTS}/tables/students.csv",
    log:
        f"{LOGS}/tables/students.log",
    benchmark:
        f"{BENCHMARKS}/tables/students.tsv"
    conda:
        "../environment.yml"
    params:
        latency=lambda wc, input: " ".join(f"--latency {path}" for path in input.latency),
    shell:
        "blockswap report students {input.metrics} {params.latency} --data {input.data} --csv {output} > {log} 2>&1"


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
    benchmark:
        f"{BENCHMARKS}/tables/{{table}}.tsv"
    wildcard_constraints:
        table="table2|table3|samples",
    conda:
        "../environment.yml"
    params:
        notes=NOTE_ARGS,
        reference=lambda w: reference_args(config) if w.table == "samples" else "",
    shell:
        "blockswap report {wildcards.table} {input} {params.notes} {params.reference} "
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
    benchmark:
        f"{BENCHMARKS}/tables/correlation.tsv"
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap report correlation {input.students} {params.proxies} "
        "--csv {output.csv} --md {output.md} > {log} 2>&1"


# The shoot-out's noise ceiling (how far the random students' error ranking repeats under another
# student seed, and the power it leaves), and whether every trained network converged.
# snakemake --cores 1 results/default/tables/ceiling.md
rule students_report:
    input:
        rules.students_table.output[0],
    output:
        csv=report(f"{RESULTS}/tables/{{table}}.csv", caption="../report/students_report.rst", category="Tables"),
        md=f"{RESULTS}/tables/{{table}}.md",
    log:
        f"{LOGS}/tables/{{table}}.log",
    benchmark:
        f"{BENCHMARKS}/tables/{{table}}.tsv"
    wildcard_constraints:
        table="ceiling|convergence",
    conda:
        "../environment.yml"
    shell:
        "blockswap report {wildcards.table} {input} --csv {output.csv} --md {output.md} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/pareto.png
rule figure_from_students:
    input:
        rules.students_table.output[0],
    output:
        png=report(f"{RESULTS}/figures/{{figure}}.png", caption="../report/students_figures.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/{{figure}}.pdf",
    log:
        f"{LOGS}/figures/{{figure}}.log",
    benchmark:
        f"{BENCHMARKS}/figures/{{figure}}.tsv"
    wildcard_constraints:
        figure="pareto|random_students",
    conda:
        "../environment.yml"
    params:
        reference=lambda w: reference_args(config) if w.figure == "random_students" else "",
    shell:
        "blockswap figure {wildcards.figure} {input} {params.reference} --out {output.png} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/fisher_vs_error.png
rule figure_fisher_vs_error:
    input:
        students=rules.students_table.output[0],
        correlation=rules.correlation.output.csv,  # rho and tau are read from it, not recomputed
        proxies=list(PROXY_FILES.values()),
    output:
        png=report(
            f"{RESULTS}/figures/fisher_vs_error.png", caption="../report/fisher_vs_error.rst", category="Figures"
        ),
        pdf=f"{RESULTS}/figures/fisher_vs_error.pdf",
    log:
        f"{LOGS}/figures/fisher_vs_error.log",
    benchmark:
        f"{BENCHMARKS}/figures/fisher_vs_error.tsv"
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap figure fisher_vs_error {input.students} --correlation {input.correlation} {params.proxies} "
        "--out {output.png} > {log} 2>&1"


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
    benchmark:
        f"{BENCHMARKS}/figures/search_{{budget}}.tsv"
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
    benchmark:
        f"{BENCHMARKS}/tables/stability.tsv"
    conda:
        "../environment.yml"
    params:
        scorings=STABILITY_ARGS,
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
    benchmark:
        f"{BENCHMARKS}/tables/proxy_costs.tsv"
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
    benchmark:
        f"{BENCHMARKS}/figures/forest.tsv"
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
    benchmark:
        f"{BENCHMARKS}/figures/proxy_scatter.tsv"
    conda:
        "../environment.yml"
    params:
        proxies=PROXY_ARGS,
    shell:
        "blockswap figure proxy_scatter {input.students} --correlation {input.correlation} {params.proxies} "
        "--out {output.png} > {log} 2>&1"


# Loss and error of every trained network by epoch, one row of panels per method.
# snakemake --cores 1 results/default/figures/learning_curves.png
rule figure_learning_curves:
    input:
        histories=TRAINING_HISTORIES,
        metrics=TRAINING_METRICS,
    output:
        png=report(
            f"{RESULTS}/figures/learning_curves.png", caption="../report/learning_curves.rst", category="Figures"
        ),
        pdf=f"{RESULTS}/figures/learning_curves.pdf",
    log:
        f"{LOGS}/figures/learning_curves.log",
    benchmark:
        f"{BENCHMARKS}/figures/learning_curves.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap figure learning_curves {input.histories} --out {output.png} > {log} 2>&1"


# Where the run's time went: Snakemake's benchmark files (benchmarks/<run>/, one per job, at the path of
# its log under logs/<run>/) summed per rule.
#
# How the inputs are declared: a benchmark file is a product of its job, so naming benchmark files
# as inputs would make Snakemake rerun every job whose file is missing (a student trained before
# the directive existed would be trained again). The inputs are instead every other file `all`
# makes, so this table is built after every job it times and again whenever one of them is remade;
# the benchmark files are read from the folder as found, and a job without one is not counted.
# TIMINGS (the csv) is named in common.smk, which leaves it out of the inputs.


# snakemake --cores 1 results/default/tables/timings.md
rule timings:
    input:
        # Everything `all` makes but this table (a function: it runs once every rule is known).
        lambda wc: [path for path in get_final_output() if path != TIMINGS],
    output:
        csv=report(TIMINGS, caption="../report/timings.rst", category="Tables"),
        md=f"{RESULTS}/tables/timings.md",
    log:
        f"{LOGS}/tables/timings.log",
    conda:
        "../environment.yml"
    params:
        folder=BENCHMARKS,
        rules=lambda wc: commands.benchmark_rule_args(workflow.rules),
    shell:
        # The folder is made first: a run whose every result predates the directives has none yet.
        "mkdir -p {params.folder:q} && blockswap report timings {params.folder:q} {params.rules} "
        "--csv {output.csv} --md {output.md} > {log} 2>&1"
