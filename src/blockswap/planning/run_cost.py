"""What a configuration costs to run: GPU-hours per stage from its plan, scaled from measured
training rates (timings.py; `blockswap plan`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.datasets import dataset_info
from .budgets import comparison_budgets, comparison_samples, input_size, scored_budgets
from .plan import NetworkPlan, lockstep_groups
from .timings import BUILT_IN, student_rates


@dataclass(frozen=True)
class StageCost:
    stage: str
    runs: int
    epochs: int
    gpu_hours: float | None


# Stage of the plan each method's training runs belong to (the workflow's stage targets).
STAGE_OF = {
    "teacher": "teacher",
    "blockswap": "students",
    "reduced": "baselines",
    "moonshine": "baselines",
    "snip": "baselines",
    "random": "ablation",
    "bestof": "ablation",
    "randomsearch": "comparison",
    "evolution": "comparison",
    "bestofn": "comparison",
}


def family(arch: str) -> str:
    return "resnet" if arch.startswith("resnet") else "wrn"


def training_epochs(config: dict, method: str) -> int:
    """Epochs of one training run: the teacher may train longer (teacher.epochs) and the ablation's
    random students shorter (ablation.epochs) than training.epochs, which every other run uses."""
    if method == "teacher" and config["teacher"].get("epochs") is not None:
        return config["teacher"]["epochs"]
    if method == "random" and config["ablation"].get("epochs") is not None:
        return config["ablation"]["epochs"]
    return config["training"]["epochs"]


def plan_cost(config: dict, plans: dict[str, NetworkPlan], timings: dict = BUILT_IN) -> list[StageCost]:
    """Training runs, epochs and estimated GPU-hours per stage, plus the Fisher scoring, from the
    measured per-image timings (None where no measurement covers the configuration)."""
    (side, _), _ = input_size(config)
    images = dataset_info(config["dataset"]).train_images  # None: a folder dataset's size is the user's
    timing = timings[family(config["teacher"]["arch"])]
    student, teacher_forward, _ = student_rates(timing, config["training"]["cuda_graphs"])
    pixels = (side / timing["side"]) ** 2
    stages: dict[str, list] = {}
    together = {name: len(group) for group in lockstep_groups(config, plans).values() for name in group}
    for plan in plans.values():
        trained = not (plan.method == "teacher" and config["teacher"]["pretrained"])
        runs = len(plan.seeds) if trained else 0
        if plan.method == "teacher":
            per_image = timing["teacher"]
        else:
            per_image = student + teacher_forward / together.get(plan.name, 1)
        epochs = training_epochs(config, plan.method)
        hours = None if per_image is None or images is None else runs * epochs * images * per_image * pixels / 3600
        entry = stages.setdefault(STAGE_OF[plan.method], [0, 0, 0.0])
        entry[0] += runs
        entry[1] += runs * epochs
        entry[2] = None if entry[2] is None or hours is None else entry[2] + hours
    rows = [StageCost(stage, runs, n_epochs, hours) for stage, (runs, n_epochs, hours) in stages.items()]
    scored = len(scored_budgets(config)) * config["search"]["samples"]
    if config["search"].get("method") == "evolution" and not config["search"]["use_released_genotypes"]:
        scored += len(config["search"]["budgets"]) * config["search"]["samples"]  # one evolution per budget
    scored += (
        2 * len(comparison_budgets(config)) * len(config["comparison"]["seeds"]) * comparison_samples(config)
        if comparison_budgets(config)
        else 0
    )  # a random and an evolution history per budget and search seed
    per_candidate = timing["score"]
    hours = 0.0 if not scored else None if per_candidate is None else scored * per_candidate * pixels / 3600
    rows.append(StageCost("search (Fisher scoring)", scored, 0, hours))
    return rows
