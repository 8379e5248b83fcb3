"""`blockswap plan`: what a workflow configuration trains, and what it costs, before anything runs."""

from __future__ import annotations

from pathlib import Path

from ..results.config_file import load_config
from ..results.plan import plan_networks, plan_notes
from ..results.run_cost import EPOCH_TIMINGS, family, plan_cost, training_epochs

GENOTYPE_DIR = Path(__file__).resolve().parents[3] / "config" / "genotypes"


def cmd_plan(args) -> None:
    config = load_config(args.configfiles)
    if config["dataset"] == "coco":
        return plan_detection(config)
    plans = plan_networks(config, GENOTYPE_DIR, f"results/{config['run']}")
    rows = plan_cost(config, plans)
    epochs = {method: training_epochs(config, method) for method in ("teacher", "blockswap", "random")}
    print(
        f"run {config['run']}: {config['dataset']}, teacher {config['teacher']['arch']}, epochs per run: "
        f"teacher {epochs['teacher']}, students {epochs['blockswap']}, random students {epochs['random']}"
    )
    print_stages(rows)
    known = [r.gpu_hours for r in rows if r.gpu_hours is not None]
    total_runs = sum(r.runs for r in rows if r.epochs)
    total_epochs = sum(r.epochs for r in rows)
    total = f"{sum(known):.2f}" if len(known) == len(rows) else "n/a"
    print(f"{'total':<26}{total_runs:>8}{total_epochs:>10}{total:>12}")
    timing = EPOCH_TIMINGS[family(config["teacher"]["arch"])]
    source = timing["measured"] or "no measurement covers this architecture family yet"
    print(
        f"runs: training runs (the total counts no scoring); GPU-hours: estimates from seconds per image "
        f"measured by bench/gpu.sh ({source}), scaled by pixel count"
    )
    for note in plan_notes(config):
        print(f"note: {note}")


def print_stages(rows) -> None:
    """The plan's table: one line per stage (runs, epochs, GPU-hours; n/a where nothing was measured)."""
    header = f"{'stage':<26}{'runs':>8}{'epochs':>10}{'GPU-hours':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        hours = "n/a" if row.gpu_hours is None else f"{row.gpu_hours:.2f}"
        print(f"{row.stage:<26}{row.runs:>8}{row.epochs:>10}{hours:>12}")


def plan_detection(config) -> None:
    """The COCO configuration (Table 4): search, two trainings, two evaluations."""
    from ..detection.plan import detection_plan

    d = config["detection"]
    rows = detection_plan(config)
    print(
        f"run {config['run']}: coco, Mask R-CNN over {d['arch']} backbones ({d['reference']} and BlockSwap), "
        f"{d['epochs']} epochs per training run on {d['gpus']} GPUs"
    )
    print_stages(rows)
    print(
        f"{'total':<26}{sum(r.runs for r in rows):>8}{sum(r.epochs for r in rows):>10}"
        f"{sum(r.gpu_hours for r in rows):>12.2f}"
    )
    print(
        "GPU-hours: A100-hours, scaled from a published ResNet-50 Mask R-CNN timing "
        "(not measured here; docs/detection.md)"
    )


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="training runs, epochs and GPU-hours of a workflow configuration",
        description="Print, per stage, the training runs and epochs a configuration asks for and an estimate "
        "of GPU-hours from measured timings. Several files merge like Snakemake's --configfile.",
    )
    p.add_argument("configfiles", nargs="+", help="configuration files (e.g. config/paper-cifar10.yaml)")


COMMANDS = {"plan": (add_plan, cmd_plan)}
