# Configuration validation, the plan of networks, input functions and wildcard constraints.

import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from blockswap.errors import BlockswapError
from blockswap.plan import config_error_message, config_key, plan_networks, save_resolved_config, use_resolved_config

# Schema defaults are applied once, by the process that starts the workflow, and the resolved
# configuration is handed to remote (e.g. SLURM) jobs through the working directory, keyed by the
# raw configuration, so a job never depends on defaults being re-applied on its node.
RESOLVED_CONFIG = Path(".snakemake") / "blockswap-config" / f"{config_key(config)}.yaml"
GENOTYPE_DIR = Path(workflow.basedir) / "config" / "genotypes"

# A bad configuration stops the workflow with one line naming the key, and before any job runs.
try:
    if workflow.remote_exec and RESOLVED_CONFIG.is_file():
        use_resolved_config(config, RESOLVED_CONFIG)
    else:
        validate(config, "../config/schema.yaml")
    RESULTS = f"results/{config['run']}"
    PLANS = plan_networks(config, GENOTYPE_DIR, RESULTS)
except (WorkflowError, BlockswapError) as err:
    sys.exit(f"blockswap: config error: {config_error_message(err)}")
if workflow.is_main_process and not workflow.remote_exec:
    save_resolved_config(config, RESOLVED_CONFIG)

LOGS = f"logs/{config['run']}"
BENCHMARKS = f"benchmarks/{config['run']}"
STUDENTS = [name for name, plan in PLANS.items() if plan.method != "teacher"]
NETWORKS = list(PLANS)
COSTED = [name for name, plan in PLANS.items() if plan.method != "random"]  # Table 2/3 rows
BUDGETS = [str(b) for b in config["search"]["budgets"]]
SEEDS = [str(s) for s in config["seeds"]]


wildcard_constraints:
    network="|".join(re.escape(n) for n in NETWORKS),
    budget="[0-9]+",
    shard="[0-9]+",
    seed="[0-9]+",
    index="[0-9]+",


def image_size_arg():
    size = config["image_size"]
    return "" if size is None else f"--image-size {size}"


def data_args(download=False):
    """The dataset options every data-reading command takes."""
    args = f"--dataset {config['dataset']} --data-dir {shlex.quote(config['data_dir'])} {image_size_arg()}"
    return args + (" --download" if download and config["download"] else "")


def training_args():
    t = config["training"]
    args = (
        f"--protocol {t['protocol']} --epochs {t['epochs']} --batch-size {t['batch_size']} "
        f"--lr {t['lr']} --weight-decay {t['weight_decay']}"
    )
    return args + ("" if t["cutout"] else " --no-cutout")


def plan_tags(network):
    plan = PLANS[network]
    tags = f"--tag method={plan.method} --tag network={network}"
    return tags + (f" --tag budget={plan.budget}" if plan.budget is not None else "")


def genotype_input(wildcards):
    """A searched or picked genotype file is an input of the DAG; block names and released files are not."""
    plan = PLANS[wildcards.network]
    return [plan.genotype] if plan.searched else []


def student_metrics(methods):
    return expand(
        f"{RESULTS}/students/{{network}}/seed-{{seed}}/metrics.json",
        network=[n for n in STUDENTS if PLANS[n].method in methods],
        seed=SEEDS,
    )


TEACHER_METRICS = expand(f"{RESULTS}/teachers/seed-{{seed}}/metrics.json", seed=SEEDS)
