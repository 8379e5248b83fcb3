"""`blockswap plan`: what a workflow configuration trains, and what it costs, before anything runs."""

from __future__ import annotations

from ..planning.config_file import load_config
from ..planning.plan import RELEASED_GENOTYPES
from ..planning.summary import plan_summary


def cmd_plan(args) -> None:
    for line in plan_summary(load_config(args.configfiles), RELEASED_GENOTYPES):
        print(line)


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="training runs, epochs and GPU-hours of a workflow configuration",
        description="Print, per stage, the training runs and epochs a configuration asks for and an estimate "
        "of GPU-hours from measured timings. Several files merge like Snakemake's --configfile.",
    )
    p.add_argument("configfiles", nargs="+", help="configuration files (e.g. config/paper-cifar10.yaml)")


COMMANDS = {"plan": (add_plan, cmd_plan)}
