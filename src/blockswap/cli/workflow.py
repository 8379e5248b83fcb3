"""`blockswap plan`: what a workflow configuration trains, and what it costs, before anything runs."""

from __future__ import annotations

from ..planning.config_file import load_config
from ..planning.plan import RELEASED_GENOTYPES
from ..planning.summary import plan_summary
from ..planning.timings import read_timings


def cmd_plan(args) -> None:
    timings = read_timings(args.timings)
    for line in plan_summary(load_config(args.configfiles), RELEASED_GENOTYPES, timings):
        print(line)


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="training runs, epochs and GPU-hours of a workflow configuration",
        description="Print, per stage, the training runs and epochs a configuration asks for and an estimate "
        "of GPU-hours from measured timings. Several files merge like Snakemake's --configfile.",
    )
    p.add_argument("configfiles", nargs="+", help="configuration files (e.g. config/paper-cifar10.yaml)")
    p.add_argument(
        "--timings",
        metavar="FILE",
        help="seconds per image and per candidate measured on your GPU (the timings.json `bash bench/gpu.sh` "
        "writes); default: the built-in H100 figures",
    )


COMMANDS = {"plan": (add_plan, cmd_plan)}
