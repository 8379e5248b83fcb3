# Deployment budgets (docs/deployment.md): a per-block latency table measured on this
# machine and calibrated against whole networks in latency.setting (the calibration latency
# budgets go through, with its held-out error), its prediction error against end-to-end timings,
# and the measured latency of every trained network. Timing jobs claim every core (threads: workflow.cores) so that no other job of
# the run shares the CPU while they measure. Its paths and input functions are in common.smk.


# snakemake --cores 2 results/default/latency/table.json
rule latency_table:
    output:
        LATENCY_TABLE,
    log:
        f"{LOGS}/latency/table.log",
    benchmark:
        f"{BENCHMARKS}/latency/table.tsv"
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        arch=config["teacher"]["arch"],
        candidates=config["search"]["candidates"],
        data=commands.data_args(config),
        device=LATENCY["device"],
        threads=commands.comma_list(LATENCY["threads"]),
        batches=commands.comma_list(LATENCY["batches"]),
        seed=LATENCY["seed"],
        measure=commands.latency_measure_args(config),
        setting=LATENCY["setting"],
        calibration=LATENCY["calibration_samples"],
        timing=commands.latency_measure_args(config, clock=False),
    shell:
        "blockswap latency {params.arch} --candidates {params.candidates} {params.data} "
        "--device {params.device} --threads {params.threads} "
        "--batches {params.batches} {params.measure} --seed {params.seed} --force --quiet --out {output} > {log} 2>&1 "
        "&& blockswap latency-calibrate {output} --setting {params.setting} --samples {params.calibration} "
        "--seed {params.seed} {params.timing} >> {log} 2>&1"


# snakemake --cores 2 results/default/latency/check.csv
rule latency_check:
    input:
        LATENCY_TABLE,
    output:
        LATENCY_CHECK,
    log:
        f"{LOGS}/latency/check.log",
    benchmark:
        f"{BENCHMARKS}/latency/check.tsv"
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        setting=LATENCY["setting"],
        samples=LATENCY["check_samples"],
        seed=LATENCY["seed"],
        measure=commands.latency_measure_args(config, clock=False),
    shell:
        "blockswap latency-check {input} --setting {params.setting} --samples {params.samples} "
        "--seed {params.seed} {params.measure} --out {output} > {log} 2>&1"


# snakemake --cores 2 results/default/latency/networks/teacher/seed-0.json
rule network_latency:
    input:
        trained_model,
    output:
        f"{RESULTS}/latency/networks/{{network}}/seed-{{seed}}.json",
    log:
        f"{LOGS}/latency/networks/{{network}}/seed-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/latency/networks/{{network}}/seed-{{seed}}.tsv"
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        setting=LATENCY["setting"],
        measure=commands.latency_measure_args(config),
    shell:
        "blockswap measure {input} --setting {params.setting} {params.measure} --out {output} > {log} 2>&1"


# snakemake --cores 1 results/default/figures/pareto_latency.png
rule figure_pareto_latency:
    input:
        f"{RESULTS}/tables/students.csv",
    output:
        png=f"{RESULTS}/figures/pareto_latency.png",
        pdf=f"{RESULTS}/figures/pareto_latency.pdf",
    log:
        f"{LOGS}/figures/pareto_latency.log",
    benchmark:
        f"{BENCHMARKS}/figures/pareto_latency.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap figure pareto_latency {input} --out {output.png} > {log} 2>&1"


# snakemake --cores 1 results/default/tables/latency_ranks.csv
rule latency_ranks:
    input:
        f"{RESULTS}/tables/students.csv",
    output:
        csv=f"{RESULTS}/tables/latency_ranks.csv",
        md=f"{RESULTS}/tables/latency_ranks.md",
    log:
        f"{LOGS}/tables/latency_ranks.log",
    benchmark:
        f"{BENCHMARKS}/tables/latency_ranks.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap report latency_ranks {input} --csv {output.csv} --md {output.md} > {log} 2>&1"
