# The configuration, validated; the plan of networks and the lists of files the rules read; input
# functions (wildcards -> paths) and wildcard constraints. The flags each job gets are built by
# blockswap.planning.commands, the files each target makes by blockswap.planning.outputs.

import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from blockswap.errors import BlockswapError
from blockswap.planning import commands, outputs
from blockswap.planning.budgets import comparison_samples
from blockswap.planning.config_file import (
    SCHEMA,
    config_error_message,
    config_key,
    save_resolved_config,
    use_resolved_config,
)
from blockswap.planning.plan import (
    COMPARISON_METHODS,
    lockstep_groups,
    plan_networks,
    plan_notes,
    RELEASED_GENOTYPES,
    STUDENT_METHODS,
)
from blockswap.planning.teacher import teacher_spec
from blockswap.planning.config_checks import check_detection
from blockswap.reporting.single_blocktype import reference_args

# Schema defaults are applied once, by the process that starts the workflow, and the resolved
# configuration is handed to remote (e.g. SLURM) jobs through the working directory, keyed by the
# raw configuration, so a job never depends on defaults being re-applied on its node.
RESOLVED_CONFIG = Path(".snakemake") / "blockswap-config" / f"{config_key(config)}.yaml"

# A bad configuration stops the workflow with one line naming the key, and before any job runs.
try:
    if workflow.remote_exec and RESOLVED_CONFIG.is_file():
        use_resolved_config(config, RESOLVED_CONFIG)
    else:
        validate(config, str(SCHEMA))
    check_detection(config)
    RESULTS = f"results/{config['run']}"
    IS_DETECTION = outputs.is_detection(config)  # Table 4: rules/detection.smk, no classification plan
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

NOTE_ARGS = commands.note_args(NOTES)  # the notes, as table options
CONFIG_TEXT = yaml.safe_dump(config, sort_keys=False)  # results/<run>/config.yaml: defaults applied
LOGS = f"logs/{config['run']}"
BENCHMARKS = f"benchmarks/{config['run']}"
# Random students trained together, ablation.lockstep per job (rules/students.smk): group -> names.
LOCKSTEP = {} if IS_DETECTION else lockstep_groups(config, PLANS)
NETWORKS = list(PLANS)
IN_LOCKSTEP = {name for group in LOCKSTEP.values() for name in group}
ALONE = [name for name in NETWORKS if name not in IN_LOCKSTEP]
COSTED = outputs.costed(PLANS)  # Table 2/3 rows with dense costs
TEACHER_METRICS = outputs.teacher_metrics(config, RESULTS)
SCORE_SHARDS = outputs.score_shards(config, RESULTS)  # the budget wildcard left for the rule to fill
PROXY_FILES = outputs.proxy_files(config, RESULTS)
PROXY_ARGS = commands.proxies_args(PROXY_FILES.items())
# Rank stability: the same candidates scored again under other scoring seeds, each labelled with its budget.
STABILITY_SCORINGS = outputs.stability_scorings(config, RESULTS)
STABILITY_FILES = [path for _, path in STABILITY_SCORINGS]
STABILITY_ARGS = commands.proxies_args(STABILITY_SCORINGS)
# The candidates of each budget that the random-student ablation trains (their indices in candidates.csv).
RANDOM_PICKS = range(config["ablation"]["random_students"])
SHOOTOUT_PROXIES = commands.comma_list(config["ablation"]["proxies"])  # the --proxies of every ablation scoring
# history.csv of every network of the students table trained here, and beside each its metrics.json
# (the method and network of each curve).
TRAINING_HISTORIES = outputs.training_histories(config, PLANS, RESULTS, PRETRAINED)
TRAINING_METRICS = [str(Path(p).with_name("metrics.json")) for p in TRAINING_HISTORIES]
TIMINGS = outputs.timings_table(RESULTS)  # rules/report.smk: where the run's time went
EVOLVED = outputs.evolved(config)
HISTORIES = outputs.search_histories(config, RESULTS)  # the guided-search comparison's histories
COMPARE_SAMPLES = comparison_samples(config)
LATENCY = config["latency"]
LATENCY_TABLE = outputs.latency_table(RESULTS)
LATENCY_CHECK = outputs.latency_check(RESULTS)
DETECTION = f"{RESULTS}/detection"
DETECTION_ROWS = outputs.DETECTION_ROWS  # folder -> Table 4 row


wildcard_constraints:
    network="|".join(re.escape(n) for n in NETWORKS),
    budget="[0-9]+",
    shard="[0-9]+",
    seed="[0-9]+",
    index="[0-9]+",


def get_final_output():
    """Everything `all` makes (blockswap.planning.outputs.final_outputs)."""
    return outputs.final_outputs(config, PLANS, RESULTS, PRETRAINED)


def student_metrics(methods):
    return outputs.student_metrics(PLANS, RESULTS, methods)


def teacher_arg(seed, network=None):
    """The --teacher of a run of `seed` (of `network`: its plan may name one teacher for every seed)."""
    if network is not None:
        seed = PLANS[network].teacher_of(int(seed))
    return PRETRAINED or f"{RESULTS}/teachers/seed-{seed}"


def teacher_weights():
    """A pretrained teacher's weight file is an input of every job that reads it."""
    return [PRETRAINED.split(":", 2)[2]] if PRETRAINED else []


def teacher_files(network, seed):
    """What a student run of `network` and `seed` reads of its teacher: the teacher's metrics.json,
    and its trained weights or the pretrained weight file."""
    teacher = PLANS[network].teacher_of(int(seed))
    weights = teacher_weights() if PRETRAINED else [f"{RESULTS}/teachers/seed-{teacher}/model.pt"]
    return [f"{RESULTS}/teachers/seed-{teacher}/metrics.json", *weights]


def genotype_input(wildcards):
    """A genotype file (searched, picked or released) is an input of the DAG; a block name is not."""
    plan = PLANS[wildcards.network]
    return [plan.genotype] if plan.searched or Path(plan.genotype).is_file() else []


def sample_latency_input(wildcards):
    """Sampling reads the latency table when a budget or a limit is a latency."""
    return [LATENCY_TABLE] if commands.samples_latency(config) else []


def trained_model(wildcards):
    if wildcards.network == "teacher":
        return f"{RESULTS}/teachers/seed-{wildcards.seed}/model.pt"
    return f"{RESULTS}/students/{wildcards.network}/seed-{wildcards.seed}/model.pt"


def detection_genotype(wildcards):
    """The searched backbone's JSON is an input of its training; the reference is a block name."""
    return [f"{DETECTION}/search/student.json"] if wildcards.backbone == "blockswap" else []
