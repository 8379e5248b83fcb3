# Deployment budgets (issue 13, docs/deployment.md): a per-block latency table measured on this
# machine, its prediction error against end-to-end timings, and the measured latency of every
# trained network. Timing jobs claim every core (threads: workflow.cores) so that no other job of
# the run shares the CPU while they measure.

LATENCY = config["latency"]
LATENCY_TABLE = f"{RESULTS}/latency/table.json"
LATENCY_CHECK = f"{RESULTS}/latency/check.csv"
# Sampling reads the table when a budget or a limit is a latency.
SAMPLES_LATENCY = config["search"]["budget_kind"] == "latency" or config["search"]["limits"].get("latency") is not None


def sample_latency_input(wildcards):
    return [LATENCY_TABLE] if SAMPLES_LATENCY else []


def sample_latency_args():
    """`blockswap sample` flags for search.limits and, when needed, the latency table."""
    limits = config["search"]["limits"]
    args = " ".join(f"--limit {kind}={value}" for kind, value in limits.items() if value is not None)
    if SAMPLES_LATENCY:
        args += f" --latency-table {LATENCY_TABLE} --latency-setting {LATENCY['setting']}"
    return args


def latency_measure_args():
    return f"--warmup {LATENCY['warmup']} --runs {LATENCY['runs']}"


def network_latency_files():
    """One measured latency per trained network and seed (a pretrained teacher has no model file)."""
    return [
        f"{RESULTS}/latency/networks/{name}/seed-{seed}.json"
        for name, plan in PLANS.items()
        if not (plan.method == "teacher" and PRETRAINED)
        for seed in plan.seeds
    ]


def students_latency_files():
    """Latency files the students table reads: every trained network's when latency.enabled."""
    return network_latency_files() if LATENCY["enabled"] else []


def latency_outputs():
    """What the `latency` target makes (and `all`, when latency.enabled)."""
    files = [LATENCY_TABLE, LATENCY_CHECK]
    if LATENCY["enabled"]:
        files += network_latency_files()
        files += [f"{RESULTS}/tables/students.csv", f"{RESULTS}/figures/pareto_latency.png"]
    return files


def trained_model(wildcards):
    if wildcards.network == "teacher":
        return f"{RESULTS}/teachers/seed-{wildcards.seed}/model.pt"
    return f"{RESULTS}/students/{wildcards.network}/seed-{wildcards.seed}/model.pt"


# snakemake --cores 2 results/default/latency/table.json
rule latency_table:
    output:
        LATENCY_TABLE,
    log:
        f"{LOGS}/latency/table.log",
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        arch=config["teacher"]["arch"],
        candidates=config["search"]["candidates"],
        dataset=config["dataset"],
        image_size=image_size_arg(),
        device=LATENCY["device"],
        threads=",".join(str(t) for t in LATENCY["threads"]),
        batches=",".join(str(b) for b in LATENCY["batches"]),
        seed=LATENCY["seed"],
        measure=latency_measure_args(),
    shell:
        "blockswap latency {params.arch} --candidates {params.candidates} --dataset {params.dataset} "
        "{params.image_size} --device {params.device} --threads {params.threads} --batches {params.batches} "
        "{params.measure} --seed {params.seed} --force --quiet --out {output} > {log} 2>&1"


# snakemake --cores 2 results/default/latency/check.csv
rule latency_check:
    input:
        LATENCY_TABLE,
    output:
        LATENCY_CHECK,
    log:
        f"{LOGS}/latency/check.log",
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        setting=LATENCY["setting"],
        samples=LATENCY["check_samples"],
        seed=LATENCY["seed"],
        measure=latency_measure_args(),
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
    conda:
        "../environment.yml"
    threads: workflow.cores
    params:
        setting=LATENCY["setting"],
        measure=latency_measure_args(),
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
    conda:
        "../environment.yml"
    shell:
        "blockswap figure pareto_latency {input} --out {output.png} > {log} 2>&1"
