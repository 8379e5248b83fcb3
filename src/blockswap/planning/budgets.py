"""The budgets and seeds a configuration asks for, stage by stage, and the image size its networks
see: what the plan is built from and what its checks check (plain functions of the config)."""

from __future__ import annotations

from ..data.datasets import dataset_info
from ..networks.architectures import NetworkSpec, parse_arch
from ..networks.blocks import candidate_set


def input_size(config: dict) -> tuple[tuple[int, int], int]:
    return dataset_info(config["dataset"]).network_input(config.get("image_size"), config["data_dir"])


def closest_single_blocktype(config: dict, budget: int) -> tuple[str | None, str]:
    """Moonshine `auto`: the candidate type that, used for every block, costs closest to `budget`,
    if that cost lies strictly inside the search tolerance; else (None, a note saying so)."""
    arch = parse_arch(config["teacher"]["arch"])
    size, classes = input_size(config)
    kind, tolerance = config["search"]["budget_kind"], config["search"]["tolerance"]
    if kind == "latency":
        return None, (
            f"no single-blocktype {arch.name} is chosen for the latency budget {budget} (latencies are "
            "measured when the workflow runs); list baselines.moonshine to train some"
        )
    best = None
    for block in candidate_set(config["search"]["candidates"]):
        if any(block.problem_at(s.cin, s.cout, s.stride) for s in arch.slots):
            continue
        cost = getattr(NetworkSpec.create(arch, block.name, classes).cost(size), kind)
        if best is None or abs(cost - budget) < best[0]:
            best = (abs(cost - budget), block.name, cost)
    _, name, cost = best
    if abs(cost - budget) < tolerance * budget:
        return name, ""
    return None, (
        f"no single-blocktype {arch.name} lies within +-{tolerance:.1%} of {budget} {kind} "
        f"(closest: all-{name} at {cost} {kind})"
    )


def ablation_budgets(config: dict) -> list[int]:
    """Budgets of the random-student ablation (Table 1, Figure 2); none when it is off."""
    ablation = config["ablation"]
    if not ablation["random_students"]:
        return []
    return list(ablation["budgets"] or config["search"]["budgets"])


def ablation_seeds(config: dict) -> tuple[int, ...]:
    return tuple(config["ablation"]["seeds"] or config["seeds"][:1])


def random_student_seeds(config: dict) -> tuple[tuple[int, ...], int | None]:
    """The seeds of each random student's runs and the teacher they share (None: each run's seed is
    its teacher's, as in the paper)."""
    students = config["ablation"].get("student_seeds")
    if students:
        return tuple(students), ablation_seeds(config)[0]
    return ablation_seeds(config), None


def samples_budget(config: dict) -> int | None:
    """The search budget of the samples ablation, or None when it is off."""
    if not config["ablation"]["samples"]:
        return None
    return config["ablation"]["samples_budget"] or config["search"]["budgets"][0]


def budget_keys(config: dict) -> dict[int, str]:
    """Every budget whose candidates are sampled (searched, ablated or samples-ablated), with the
    configuration key it comes from (the first one, when several name it), in that order."""
    search, keys = config["search"], {}
    for budget in [] if search["use_released_genotypes"] else search["budgets"]:
        keys.setdefault(budget, "search.budgets")
    for budget in ablation_budgets(config):
        keys.setdefault(budget, "ablation.budgets" if config["ablation"]["budgets"] else "search.budgets")
    if samples_budget(config) is not None:
        keys.setdefault(samples_budget(config), "ablation.samples_budget")
    return keys


def sampled_budgets(config: dict) -> list[int]:
    """Every budget whose candidates are sampled: searched, ablated or samples-ablated."""
    return list(budget_keys(config))


def scored_budgets(config: dict) -> list[int]:
    """Budgets whose candidates are all scored by Fisher potential (search or samples ablation)."""
    search = config["search"]
    evolved = search.get("method", "random") == "evolution"  # evolution scores in its own history
    budgets = [] if search["use_released_genotypes"] or evolved else list(search["budgets"])
    if samples_budget(config) is not None:
        budgets.append(samples_budget(config))
    return list(dict.fromkeys(budgets))


def comparison_budgets(config: dict) -> list[int]:
    """Budgets of the guided-search comparison; none when it is off (no search seeds)."""
    comparison = config.get("comparison") or {}
    if not comparison.get("seeds"):
        return []
    return list(comparison.get("budgets") or config["search"]["budgets"])


def comparison_samples(config: dict) -> int:
    return (config.get("comparison") or {}).get("samples") or config["search"]["samples"]


def comparison_trained_seeds(config: dict) -> list[int]:
    """Search seeds whose winners (and best-of-N networks) are trained."""
    comparison = config.get("comparison") or {}
    return list(comparison.get("seeds") or [])[: comparison.get("trained", 0)]
