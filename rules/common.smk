# Configuration validation, the plan of networks, input functions and wildcard constraints.

import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from blockswap.errors import BlockswapError
from blockswap.planning.budgets import (
    ablation_budgets,
    comparison_budgets,
    comparison_samples,
    comparison_trained_seeds,
    random_student_seeds,
    sampled_budgets,
    scored_budgets,
)
from blockswap.planning.plan import (
    COMPARISON_METHODS,
    lockstep_groups,
    plan_networks,
    plan_notes,
    RELEASED_GENOTYPES,
    STUDENT_METHODS,
    teacher_spec,
)
from blockswap.planning.config_file import (
    config_error_message,
    config_key,
    save_resolved_config,
    use_resolved_config,
)
from blockswap.planning.run_cost import training_epochs
from blockswap.results.single_blocktype import reference_args

# Schema defaults are applied once, by the process that starts the workflow, and the resolved
# configuration is handed to remote (e.g. SLURM) jobs through the working directory, keyed by the
# raw configuration, so a job never depends on defaults being re-applied on its node.
RESOLVED_CONFIG = Path(".snakemake") / "blockswap-config" / f"{config_key(config)}.yaml"

# A bad configuration stops the workflow with one line naming the key, and before any job runs.
try:
    if workflow.remote_exec and RESOLVED_CONFIG.is_file():
        use_resolved_config(config, RESOLVED_CONFIG)
    else:
        validate(config, "../config/schema.yaml")
    RESULTS = f"results/{config['run']}"
    IS_DETECTION = config["dataset"] == "coco"  # Table 4: rules/detection.smk, no classification plan
    PLANS = {} if IS_DETECTION else plan_networks(config, RELEASED_GENOTYPES, RESULTS)
    # What the plan could not do as asked: printed now, shown in the tables.
    NOTES = [] if IS_DETECTION else plan_notes(config)
    # The teacher students are distilled from: a trained run per seed, or torchvision's weights file.
    PRETRAINED = teacher_spec(config)
except (WorkflowError, BlockswapError) as err:
    sys.exit(f"blockswap: config error: {config_error_message(err)}")
if workflow.is_main_process and not workflow.remote_exec:
    save_resolved_config(config, RESOLVED_CONFIG)
    for note in NOTES:
        print(f"blockswap: note: {note}", file=sys.stderr)

NOTE_ARGS = " ".join(f"--note {shlex.quote(n)}" for n in NOTES)  # the notes, as table options
CONFIG_TEXT = yaml.safe_dump(config, sort_keys=False)  # results/<run>/config.yaml: defaults applied
LOGS = f"logs/{config['run']}"
BENCHMARKS = f"benchmarks/{config['run']}"
STUDENTS = [name for name, plan in PLANS.items() if plan.method != "teacher"]
# Random students trained together, ablation.lockstep per job (rules/students.smk): group -> names.
LOCKSTEP = {} if IS_DETECTION else lockstep_groups(config, PLANS)
NETWORKS = list(PLANS)
IN_LOCKSTEP = {name for group in LOCKSTEP.values() for name in group}
ALONE = [name for name in NETWORKS if name not in IN_LOCKSTEP]
COSTED = [
    name for name, plan in PLANS.items() if plan.method not in ("random", "bestof", "snip", *COMPARISON_METHODS)
]  # Table 2/3 rows with dense costs
BUDGETS = [str(b) for b in config["search"]["budgets"]]
SEARCHED = [] if config["search"]["use_released_genotypes"] else BUDGETS  # budgets with a student.json
SCORED = [str(b) for b in scored_budgets(config)]  # budgets whose candidates are all scored
ABLATED = [str(b) for b in ablation_budgets(config)]  # budgets of the random-student ablation
SAMPLED = [str(b) for b in sampled_budgets(config)]  # budgets whose candidates are sampled
SEEDS = [str(s) for s in config["seeds"]]
# The noise ceiling needs every random student under two or more seeds.
CEILING = not IS_DETECTION and len(random_student_seeds(config)[0]) >= 2


wildcard_constraints:
    network="|".join(re.escape(n) for n in NETWORKS),
    budget="[0-9]+",
    shard="[0-9]+",
    seed="[0-9]+",
    index="[0-9]+",


def optional_arg(flag, value):
    """The option for a key whose null means "leave the command's default": nothing then."""
    return "" if value is None else f"{flag} {value}"


def comma_list(values):
    """A list key as the comma-separated value the CLI takes."""
    return ",".join(str(v) for v in values)


def image_size_arg():
    return optional_arg("--image-size", config["image_size"])


def data_args(download=False):
    """The dataset options every data-reading command takes."""
    args = f"--dataset {config['dataset']} --data-dir={shlex.quote(config['data_dir'])} {image_size_arg()}"
    return args + (" --download" if download and config["download"] else "")


def training_args(network=None):
    """The training flags every training job gets; unset (null) keys leave the protocol's values."""
    t = config["training"]
    epochs = training_epochs(config, PLANS[network].method if network else "teacher")
    args = (
        f"--protocol {t['protocol']} --epochs {epochs} --batch-size {t['batch_size']} "
        f"--lr {t['lr']} --weight-decay {t['weight_decay']} --nproc {t['gpus']}"
    )
    args += " --cutout" if t["cutout"] else " --no-cutout"
    if t["schedule"] is not None:
        args += f" --schedule {t['schedule']}"
    if t["milestones"] is not None:
        args += f" --milestones {comma_list(t['milestones'])}"
    if t["gamma"] is not None:
        args += f" --gamma {t['gamma']}"
    args += " --channels-last" if t["channels_last"] else ""
    return args + (" --drop-last" if t["drop_last"] else "")


def search_proxy_args():
    """The search scores its proxy besides the Fisher potential (which every score file has)."""
    proxy = config["search"]["proxy"]
    return "" if proxy in ("fisher", "params", "macs") else f"--proxies {proxy} --minibatches 1 "


def distillation_args(network):
    """AT weight (auto: rescaled with the image size by the trainer) and, for SNIP, the pruning."""
    beta = config["distillation"]["beta"]
    args = "" if beta == "auto" else f"--beta {beta}"
    plan = PLANS[network]
    if plan.prune_params is not None:
        args += f" --prune snip --prune-params {plan.prune_params}"
    return args


def teacher_arg(seed, network=None):
    """The --teacher of a run of `seed` (of `network`: its plan may name one teacher for every seed)."""
    if network is not None:
        seed = PLANS[network].teacher_of(int(seed))
    return PRETRAINED or f"{RESULTS}/teachers/seed-{seed}"


def teacher_files(network, seed):
    """What a student run of `network` and `seed` reads of its teacher: the teacher's metrics.json,
    and its trained weights or the pretrained weight file."""
    teacher = PLANS[network].teacher_of(int(seed))
    weights = teacher_weights() if PRETRAINED else [f"{RESULTS}/teachers/seed-{teacher}/model.pt"]
    return [f"{RESULTS}/teachers/seed-{teacher}/metrics.json", *weights]


def plan_tags(network):
    plan = PLANS[network]
    tags = f"--tag method={plan.method} --tag network={network}"
    return tags + (f" --tag budget={plan.budget}" if plan.budget is not None else "")


def lockstep_tags(members):
    """The labels of a lockstep job's students: their method, and one network and budget each."""
    plans = [PLANS[n] for n in members]
    tags = f"--tag method={plans[0].method} --each-tag network={','.join(members)}"
    return tags + f" --each-tag budget={','.join(str(p.budget) for p in plans)}"


def genotype_input(wildcards):
    """A genotype file (searched, picked or released) is an input of the DAG; a block name is not."""
    plan = PLANS[wildcards.network]
    return [plan.genotype] if plan.searched or Path(plan.genotype).is_file() else []


def student_metrics(methods):
    """metrics.json of every (network, seed) of these methods; each network has its own seeds."""
    return [
        f"{RESULTS}/students/{name}/seed-{seed}/metrics.json"
        for name in STUDENTS
        if PLANS[name].method in methods
        for seed in PLANS[name].seeds
    ]


def teacher_weights():
    """A pretrained teacher's weight file is an input of every job that reads it."""
    return [PRETRAINED.split(":", 2)[2]] if PRETRAINED else []


TEACHER_METRICS = expand(f"{RESULTS}/teachers/seed-{{seed}}/metrics.json", seed=SEEDS)
SHARDS = range(config["search"]["shards"])  # the score shards of every scored budget


def score_shards(budget="{budget}"):
    """Every score shard of one budget; by default the budget wildcard is left for the rule to fill."""
    return [f"{RESULTS}/search/{budget}/scores/shard-{i}.csv" for i in SHARDS]


SCORE_SHARDS = score_shards()


def proxies_args(labelled_files):
    """The `--proxies LABEL=FILE` options of the report and figure commands, from (label, file) pairs."""
    return " ".join(f"--proxies {label}={path}" for label, path in labelled_files)


PROXY_FILES = {b: f"{RESULTS}/ablation/{b}/proxies.csv" for b in ABLATED}
PROXY_ARGS = proxies_args(PROXY_FILES.items())
# Rank stability: the same candidates scored again under each of these scoring seeds.
STABILITY_SEEDS = [config["search"]["seed"] + i for i in range(1, config["ablation"]["stability_seeds"] + 1)]
STABILITY_SCORINGS = [(b, f"{RESULTS}/ablation/{b}/stability/seed-{s}.csv") for b in ABLATED for s in STABILITY_SEEDS]
STABILITY_FILES = [path for _, path in STABILITY_SCORINGS]
STABILITY_ARGS = proxies_args(STABILITY_SCORINGS)  # each scoring labelled with its budget
# The candidates of each budget that the random-student ablation trains (their indices in candidates.csv).
RANDOM_PICKS = range(config["ablation"]["random_students"])
SHOOTOUT_PROXIES = ",".join(config["ablation"]["proxies"])  # the --proxies of every ablation scoring


def paper_tables():
    """The paper's tables this configuration makes: Table 2 or 3, Table 1, the samples ablation; Table 4 (coco)."""
    if IS_DETECTION:
        return [f"{RESULTS}/tables/table4.md"]
    main = "table3" if config["dataset"] == "imagenet" else "table2"
    tables = [f"{RESULTS}/tables/costs.csv", f"{RESULTS}/tables/students.csv", f"{RESULTS}/tables/{main}.md"]
    tables += [f"{RESULTS}/tables/convergence.md"]
    tables += [f"{RESULTS}/tables/correlation.md", f"{RESULTS}/tables/proxy_costs.md"] if ABLATED else []
    tables += [f"{RESULTS}/tables/ceiling.md"] if ABLATED and CEILING else []
    tables += [f"{RESULTS}/tables/stability.md"] if ABLATED and STABILITY_SEEDS else []
    return tables + ([f"{RESULTS}/tables/samples.md"] if config["ablation"]["samples"] else [])


def paper_figures():
    if IS_DETECTION:
        return []  # Table 4 has no figure
    figures = [f"{RESULTS}/figures/pareto.png", f"{RESULTS}/figures/learning_curves.png"]
    figures += expand(f"{RESULTS}/figures/search_{{budget}}.png", budget=SEARCHED if not EVOLVED else [])
    if ABLATED:
        figures += [f"{RESULTS}/figures/random_students.png", f"{RESULTS}/figures/fisher_vs_error.png"]
        figures += [f"{RESULTS}/figures/forest.png", f"{RESULTS}/figures/proxy_scatter.png"]
    return figures


# history.csv of every network of the students table trained here (a pretrained teacher has none).
TRAINING_HISTORIES = [
    *([] if PRETRAINED else expand(f"{RESULTS}/teachers/seed-{{seed}}/history.csv", seed=SEEDS)),
    *(str(Path(p).with_name("history.csv")) for p in student_metrics(STUDENT_METHODS)),
]
# The method and network of each curve: the metrics.json its training wrote beside it.
TRAINING_METRICS = [str(Path(p).with_name("metrics.json")) for p in TRAINING_HISTORIES]
TIMINGS = f"{RESULTS}/tables/timings.csv"  # rules/report.smk: where the run's time went


def benchmark_rule_args():
    """Each rule's benchmark pattern, so that the timings table counts every file under the rule that
    wrote it. Called from a params function: by then every rule is known."""
    return " ".join(
        f"--rule {r.name}={shlex.quote(str(r.benchmark))}" for r in workflow.rules if r.benchmark is not None
    )


def get_final_output():
    """Everything `all` makes. Per-network results are listed as well as the tables built from them:
    Snakemake (>= 7.7) does not remake a deleted intermediate file whose consumers are up to date,
    but it always remakes a missing input of the target, and then the tables that depend on it."""
    if IS_DETECTION:
        return [*detection_outputs(), TIMINGS]
    return [
        f"{RESULTS}/config.yaml",
        *TEACHER_METRICS,
        *search_results(),
        *student_metrics(STUDENT_METHODS),
        *paper_tables(),
        *paper_figures(),
        *(comparison_outputs() if config["comparison"]["in_all"] else []),
        *(latency_outputs() if config["latency"]["enabled"] else []),
        TIMINGS,  # rules/report.smk: built after everything else
    ]


def search_outputs():
    """What the `search` target makes: the selected student of every budget."""
    return [f"{RESULTS}/search/{b}/student.json" for b in BUDGETS]


def ablation_outputs():
    """What the `ablation` target makes: the random and best-of-N students, and the proxy scores."""
    return [*student_metrics(["random", "bestof"]), *PROXY_FILES.values()]


def search_results():
    """Candidates, score shards, selections and picked random students: listed so that a deleted
    one is rebuilt (and what depends on it rerun), as a deleted student is."""
    files = [f"{RESULTS}/search/{b}/candidates.csv" for b in SAMPLED]
    files += [path for b in SCORED for path in score_shards(b)]
    files += [f"{RESULTS}/search/{b}/student.json" for b in SEARCHED]
    files += [PLANS[n].genotype for n in STUDENTS if PLANS[n].method in ("bestof", "random")]
    return files + list(PROXY_FILES.values()) + STABILITY_FILES


# --- guided search: evolution as the search method, and the comparison with random ---
EVOLVED = config["search"]["method"] == "evolution"
COMPARED = [str(b) for b in comparison_budgets(config)]  # budgets of the evolution-vs-random comparison
COMPARE_SEEDS = [str(s) for s in config["comparison"]["seeds"]]
COMPARE_SAMPLES = comparison_samples(config)
HISTORIES = expand(
    f"{RESULTS}/compare/{{budget}}/{{method}}/seed-{{seed}}/history.csv",
    budget=COMPARED,
    method=["random", "evolution"],
    seed=COMPARE_SEEDS,
)


def guided_search_args():
    """What every `blockswap search` job gets from search: (the seed and the budget are the job's)."""
    s = config["search"]
    return (
        f"--arch {config['teacher']['arch']} --budget-kind {s['budget_kind']} --tolerance {s['tolerance']} "
        f"--candidates {s['candidates']} --population {s['population']} --tournament {s['tournament']} "
        f"--proxy {s['proxy']} --score-seed {s['seed']} --batch-size {s['batch_size']} {data_args()}"
    )


def comparison_outputs():
    """Everything `compare` makes: the histories, the proxy-vs-evaluations table and figure, and, when
    winners are trained, their students and the error tables."""
    if not COMPARED:
        return []
    files = [*HISTORIES, f"{RESULTS}/tables/search_curves.md", f"{RESULTS}/figures/search_curves.png"]
    if comparison_trained_seeds(config):
        files += [PLANS[n].genotype for n in STUDENTS if PLANS[n].method in COMPARISON_METHODS]
        files += [*student_metrics(COMPARISON_METHODS), f"{RESULTS}/tables/search_winners.md"]
    if comparison_trained_seeds(config) and config["comparison"]["bestof"]:
        files.append(f"{RESULTS}/tables/bestof_seeds.md")
    return files


# --- deployment budgets (rules/latency.smk) ---

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


def latency_measure_args(clock=True):
    """Timing flags; latency-check takes no clock (it times on its table's)."""
    args = f"--warmup {LATENCY['warmup']} --runs {LATENCY['runs']}"
    return args + (f" --clock {LATENCY['clock']}" if clock else "")


def network_latency_files():
    """One measured latency per network and seed of the students table: the teacher (unless
    pretrained: no model file) and the students of `all`. The comparison's students go into their
    own table, which takes no latency files, so they are not measured."""
    return [
        f"{RESULTS}/latency/networks/{name}/seed-{seed}.json"
        for name, plan in PLANS.items()
        if (plan.method == "teacher" and not PRETRAINED) or plan.method in STUDENT_METHODS
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
        files += [f"{RESULTS}/tables/latency_ranks.csv"]
    return files


def trained_model(wildcards):
    if wildcards.network == "teacher":
        return f"{RESULTS}/teachers/seed-{wildcards.seed}/model.pt"
    return f"{RESULTS}/students/{wildcards.network}/seed-{wildcards.seed}/model.pt"


# --- Table 4 (dataset coco): rules/detection.smk ---

DETECTION = f"{RESULTS}/detection"
if config["detection"]["min_size"] > config["detection"]["max_size"]:
    sys.exit("blockswap: config error: detection.min_size is more than detection.max_size")
DETECTION_ROWS = {"resnet34-gn": "moonshine", "blockswap": "blockswap"}  # folder -> Table 4 row


def detection_args():
    d = config["detection"]
    return f"--data-dir={shlex.quote(config['data_dir'])} --min-size {d['min_size']} --max-size {d['max_size']}"


def detection_genotype(wildcards):
    """The searched backbone's JSON is an input of its training; the reference is a block name."""
    return [f"{DETECTION}/search/student.json"] if wildcards.backbone == "blockswap" else []


def detection_training_args():
    d = config["detection"]
    args = (
        f"--arch {d['arch']} --epochs {d['epochs']} --batch-size {d['batch_size']} --seed {d['seed']} "
        f"--milestones {comma_list(d['milestones']) or ','} --warmup-iters {d['warmup_iters']} "
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
