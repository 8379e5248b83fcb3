"""The lines `blockswap plan` prints: per stage, the training runs, epochs and GPU-hours of a
configuration, and what the plan could not do as asked."""

from __future__ import annotations

from pathlib import Path

from .config_checks import check_detection
from .detection import detection_plan
from .plan import plan_networks, plan_notes
from .run_cost import family, plan_cost, training_epochs
from .timings import BUILT_IN, student_rates


def plan_summary(config: dict, genotype_dir: Path, timings: dict = BUILT_IN) -> list[str]:
    """The plan of a validated configuration, as lines of text; GPU-hours from `timings`
    (timings.read_timings: the built-in figures, or a file bench/gpu.sh wrote)."""
    if config["dataset"] == "coco":
        return detection_summary(config)
    plans = plan_networks(config, genotype_dir, f"results/{config['run']}")
    rows = plan_cost(config, plans, timings)
    epochs = {method: training_epochs(config, method) for method in ("teacher", "blockswap", "random")}
    lines = [
        f"run {config['run']}: {config['dataset']}, teacher {config['teacher']['arch']}, epochs per run: "
        f"teacher {epochs['teacher']}, students {epochs['blockswap']}, random students {epochs['random']}"
    ]
    lines += stage_lines(rows)
    known = [r.gpu_hours for r in rows if r.gpu_hours is not None]
    total_runs = sum(r.runs for r in rows if r.epochs)
    total_epochs = sum(r.epochs for r in rows)
    total = f"{sum(known):.2f}" if len(known) == len(rows) else "n/a"
    lines.append(f"{'total':<26}{total_runs:>8}{total_epochs:>10}{total:>12}")
    timing = timings[family(config["teacher"]["arch"])]
    steps = ""
    if config["training"]["cuda_graphs"]:
        _, _, graphed = student_rates(timing, True)
        steps = (
            ", students' steps with CUDA graphs"
            if graphed
            else ", students' steps eager (no CUDA-graph timing was measured)"
        )
    lines.append(
        f"runs: training runs (the total counts no scoring); GPU-hours: estimates from seconds per image "
        f"({timing['measured']}{steps}), scaled by pixel count"
    )
    return lines + [f"note: {note}" for note in plan_notes(config)]


def stage_lines(rows) -> list[str]:
    """The plan's table: one line per stage (runs, epochs, GPU-hours; n/a where nothing was measured)."""
    header = f"{'stage':<26}{'runs':>8}{'epochs':>10}{'GPU-hours':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        hours = "n/a" if row.gpu_hours is None else f"{row.gpu_hours:.2f}"
        lines.append(f"{row.stage:<26}{row.runs:>8}{row.epochs:>10}{hours:>12}")
    return lines


def detection_summary(config: dict) -> list[str]:
    """The COCO configuration (Table 4): search, two trainings, two evaluations."""
    check_detection(config)
    d = config["detection"]
    rows = detection_plan(config)
    lines = [
        f"run {config['run']}: coco, Mask R-CNN over {d['arch']} backbones ({d['reference']} and BlockSwap), "
        f"{d['epochs']} epochs per training run on {d['gpus']} GPUs"
    ]
    lines += stage_lines(rows)
    lines.append(
        f"{'total':<26}{sum(r.runs for r in rows):>8}{sum(r.epochs for r in rows):>10}"
        f"{sum(r.gpu_hours for r in rows):>12.2f}"
    )
    lines.append(
        "GPU-hours: A100-hours, scaled from a published ResNet-50 Mask R-CNN timing "
        "(not measured here; docs/detection.md)"
    )
    return lines
