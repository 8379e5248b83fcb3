"""The command-line flags each workflow job gets, built from the (validated) configuration.

Plain functions of the config dict (and of a network's plan where a job trains one), so that the
rules in rules/*.smk only place them in their shell commands and pytest can pin what every
builder writes. A key whose null means "the command's default" adds nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from ..networks.teacher_specs import parse_spec
from ..search.score_files import OWN_COLUMN_PROXIES
from .plan import NetworkPlan
from .run_cost import training_epochs
from .teacher import teacher_spec


def optional_arg(flag: str, value) -> str:
    """The option for a key whose null means "leave the command's default": nothing then."""
    return "" if value is None else f"{flag} {value}"


def comma_list(values: Iterable) -> str:
    """A list key as the comma-separated value the CLI takes."""
    return ",".join(str(v) for v in values)


def image_size_arg(config: dict) -> str:
    return optional_arg("--image-size", config["image_size"])


def data_args(config: dict, download: bool = False) -> str:
    """The dataset options every data-reading command takes."""
    args = f"--dataset {config['dataset']} --data-dir={shlex.quote(config['data_dir'])} {image_size_arg(config)}"
    return args + (" --download" if download and config["download"] else "")


def scoring_data_args(config: dict) -> str:
    """The data options of a scoring command, with a pretrained teacher's normalisation: candidates
    are scored on inputs normalised as their students will be trained (the teacher's library's),
    not with the dataset's own statistics."""
    spec = teacher_spec(config)
    if spec is None:
        return data_args(config)
    arch, _ = parse_spec(spec)
    return f"{data_args(config)} --mean {comma_list(arch.mean)} --std {comma_list(arch.std)}"


def keep_args(config: dict) -> str:
    """The blocks every candidate keeps as the pretrained teacher's own (teacher.keep), for the
    commands that draw candidates (sample, search)."""
    keep = config["teacher"].get("keep")
    return f"--keep {shlex.quote(keep)} --teacher {shlex.quote(teacher_spec(config))}" if keep else ""


def training_args(config: dict, method: str = "teacher") -> str:
    """The training flags every training job of `method` gets; unset (null) keys leave the protocol's values."""
    t = config["training"]
    args = (
        f"--protocol {t['protocol']} --epochs {training_epochs(config, method)} --batch-size {t['batch_size']} "
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
    args += " --cuda-graphs" if t["cuda_graphs"] else ""
    return args + (" --drop-last" if t["drop_last"] else "")


def distillation_args(config: dict, plan: NetworkPlan) -> str:
    """AT weight (auto: rescaled with the image size by the trainer), a pretrained teacher's stem as
    the student's start, and, for SNIP, the pruning."""
    beta = config["distillation"]["beta"]
    args = "" if beta == "auto" else f"--beta {beta}"
    if config["distillation"]["teacher_init"] and config["teacher"]["pretrained"]:
        args += " --teacher-init"  # the pretrained teacher's stem, copied into the student
    if plan.prune_params is not None:
        args += f" --prune snip --prune-params {plan.prune_params}"
    return args


def plan_tags(plan: NetworkPlan) -> str:
    """The labels a student's metrics.json carries: its method, network and budget."""
    tags = f"--tag method={plan.method} --tag network={plan.name}"
    return tags + (f" --tag budget={plan.budget}" if plan.budget is not None else "")


def lockstep_tags(plans: Sequence[NetworkPlan]) -> str:
    """The labels of a lockstep job's students: their method, and one network and budget each."""
    tags = f"--tag method={plans[0].method} --each-tag network={','.join(p.name for p in plans)}"
    return tags + f" --each-tag budget={','.join(str(p.budget) for p in plans)}"


def search_proxy_args(config: dict) -> str:
    """The search scores its proxy besides the Fisher potential and the costs (which every score file has)."""
    proxy = config["search"]["proxy"]
    return "" if proxy in OWN_COLUMN_PROXIES else f"--proxies {proxy} --minibatches 1 "


def guided_search_args(config: dict) -> str:
    """What every `blockswap search` job gets from search: (the seed and the budget are the job's)."""
    s = config["search"]
    flags = (
        f"--arch {config['teacher']['arch']} --budget-kind {s['budget_kind']} --tolerance {s['tolerance']} "
        f"--candidates {s['candidates']} --population {s['population']} --tournament {s['tournament']} "
        f"--proxy {s['proxy']} --score-seed {s['seed']} --batch-size {s['batch_size']} {scoring_data_args(config)}"
    )
    return " ".join(filter(None, [flags, keep_args(config)]))


def samples_latency(config: dict) -> bool:
    """Whether sampling reads the latency table: a budget or a limit is a latency."""
    search = config["search"]
    return search["budget_kind"] == "latency" or search["limits"].get("latency") is not None


def sample_latency_args(config: dict, latency_table: str) -> str:
    """`blockswap sample` flags for search.limits and, when needed, the latency table."""
    limits = config["search"]["limits"]
    args = " ".join(f"--limit {kind}={value}" for kind, value in limits.items() if value is not None)
    if samples_latency(config):
        args += f" --latency-table {latency_table} --latency-setting {config['latency']['setting']}"
    return args


def latency_measure_args(config: dict, clock: bool = True) -> str:
    """Timing flags; latency-check takes no clock (it times on its table's)."""
    latency = config["latency"]
    args = f"--warmup {latency['warmup']} --runs {latency['runs']}"
    return args + (f" --clock {latency['clock']}" if clock else "")


def proxies_args(labelled_files: Iterable[tuple]) -> str:
    """The `--proxies LABEL=FILE` options of the report and figure commands, from (label, file) pairs."""
    return " ".join(f"--proxies {label}={path}" for label, path in labelled_files)


def note_args(notes: Iterable[str]) -> str:
    """What the plan could not do as asked, as the table commands' `--note` options."""
    return " ".join(f"--note {shlex.quote(n)}" for n in notes)


def benchmark_rule_args(rules: Iterable) -> str:
    """Each rule's benchmark pattern (`--rule NAME=PATTERN`), so that the timings table counts every
    file under the rule that wrote it; `rules` are Snakemake's (name, benchmark)."""
    return " ".join(f"--rule {r.name}={shlex.quote(str(r.benchmark))}" for r in rules if r.benchmark is not None)


def detection_args(config: dict) -> str:
    """The COCO options of detection search and training: where the images are and their size."""
    d = config["detection"]
    return f"--data-dir={shlex.quote(config['data_dir'])} --min-size {d['min_size']} --max-size {d['max_size']}"


def detection_training_args(config: dict) -> str:
    d = config["detection"]
    args = (
        f"--arch {d['arch']} --epochs {d['epochs']} --batch-size {d['batch_size']} --seed {d['seed']} "
        f"--milestones {comma_list(d['milestones']) or ','} --warmup-iters {d['warmup_iters']} "
        f"--nproc {d['gpus']}"
    )
    args += f" --lr {d['lr']}" if d["lr"] is not None else ""
    return args + (f" --limit {d['train_limit']}" if d["train_limit"] is not None else "")
