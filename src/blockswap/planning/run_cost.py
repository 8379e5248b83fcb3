"""What a configuration costs to run: GPU-hours per stage from its plan, scaled from measured
training rates (`blockswap plan`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.datasets import dataset_info
from .budgets import comparison_budgets, comparison_samples, input_size, scored_budgets
from .plan import NetworkPlan, lockstep_groups

# Training images per epoch of each dataset (digits: the 60 % training split of 1797 scans).

# GPU seconds per training image (forward + backward + optimiser step, paper mode, float32 with
# PyTorch's default TF32 convolutions) at a reference input side, measured by `bash bench/gpu.sh`
# on one NVIDIA H100 80GB HBM3 (torch 2.11, 2026-11-26); other sizes scale with the pixel count.
# wrn: WRN-40-2 teacher 5,167 images/s; students the mean of 1/rate over a BlockSwap 404.2K,
# all-G(4) and all-G(N) WRN-40-2 (3,298, 2,968, 4,375 images/s) plus the frozen teacher's forward
# pass for attention transfer (a third of its training step: an estimate, not measured). Students
# trained in lockstep (ablation.lockstep) share that forward pass: each pays 1/K of it.
# resnet: ResNet-34 at 224 px, batch 256, 2,874 images/s, for the teacher and (plus the teacher's
# forward pass, as above) for every student: no ImageNet student was timed.
_WRN_TEACHER, _WRN_STUDENTS = 1 / 5167, (1 / 3298 + 1 / 2968 + 1 / 4375) / 3
_RESNET = 1 / 2874
EPOCH_TIMINGS = {
    "wrn": {
        "side": 32,
        "teacher": _WRN_TEACHER,
        "student": _WRN_STUDENTS,
        "teacher_forward": _WRN_TEACHER / 3,
        "measured": "H100, 2026-11-26",
    },
    "resnet": {
        "side": 224,
        "teacher": _RESNET,
        "student": _RESNET,
        "teacher_forward": _RESNET / 3,
        "measured": "H100, 2026-11-26",
    },
}
# Seconds per Fisher-scored candidate at the reference side (WRN-40-2 at 404.2K, batch 128: 1000
# candidates in 50.7 s on the H100, TF32 on); no ResNet candidate was timed.
SCORE_SECONDS = {"wrn": 0.0507, "resnet": None}


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


def plan_cost(config: dict, plans: dict[str, NetworkPlan]) -> list[StageCost]:
    """Training runs, epochs and estimated GPU-hours per stage, plus the Fisher scoring, from the
    measured per-image timings (None where no measurement covers the configuration)."""
    (side, _), _ = input_size(config)
    images = dataset_info(config["dataset"]).train_images  # None: a folder dataset's size is the user's
    timing = EPOCH_TIMINGS[family(config["teacher"]["arch"])]
    pixels = (side / timing["side"]) ** 2
    stages: dict[str, list] = {}
    together = {name: len(group) for group in lockstep_groups(config, plans).values() for name in group}
    for plan in plans.values():
        trained = not (plan.method == "teacher" and config["teacher"]["pretrained"])
        runs = len(plan.seeds) if trained else 0
        if plan.method == "teacher":
            per_image = timing["teacher"]
        else:
            per_image = timing["student"] + timing["teacher_forward"] / together.get(plan.name, 1)
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
    per_candidate = SCORE_SECONDS[family(config["teacher"]["arch"])]
    hours = 0.0 if not scored else None if per_candidate is None else scored * per_candidate * pixels / 3600
    rows.append(StageCost("search (Fisher scoring)", scored, 0, hours))
    return rows
