"""Which networks a run trains and costs, derived from its (validated) workflow configuration.

Plain functions over the config dict so that the workflow's rules stay thin and pytest can check
the plan. Network names are file-name safe; they key every per-network result.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..errors import BlockswapError
from ..networks.architectures import NetworkSpec, parse_arch
from ..networks.blocks import parse_block
from .budgets import (
    ablation_budgets,
    ablation_seeds,
    closest_single_blocktype,
    comparison_budgets,
    comparison_trained_seeds,
    input_size,
    random_student_seeds,
    samples_budget,
)
from .config_checks import check_plan


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    method: str
    arch: str
    genotype: str  # what `blockswap --genotype` takes: a block name, or a genotype file
    budget: int | None = None
    searched: bool = False  # genotype file produced by the search stage (a DAG input)
    seeds: tuple[int, ...] = ()  # the seeds of its runs: each the teacher's too, unless teacher_seed is set
    prune_params: int | None = None  # SNIP: parameters left after pruning at initialisation
    first: int | None = None  # samples ablation: the Fisher-best of the first N candidates
    teacher_seed: int | None = None  # every run distilled from this teacher (random students' student seeds)

    def teacher_of(self, seed: int) -> int:
        """The seed of the teacher the run of `seed` is distilled from."""
        return seed if self.teacher_seed is None else self.teacher_seed


# Methods of the student plan, in the order of Table 2 (after the teacher).
STUDENT_METHODS = ("reduced", "moonshine", "snip", "blockswap", "bestof", "random")
# Students of the guided-search comparison: the winners of random search and of evolution
# per search seed, and the proxy-best of the first N random candidates per search seed. Their own
# target (`compare`) and tables; not rows of Table 2.
COMPARISON_METHODS = ("randomsearch", "evolution", "bestofn")


# The paper's released genotypes, one YAML file each: package data (pyproject.toml), so that an
# installed package, a wheel included, finds them where the workflow and the CLI look.
RELEASED_GENOTYPES = Path(str(resources.files("blockswap") / "genotypes"))


def released_genotypes(genotype_dir: Path, arch: str) -> dict[str, Path]:
    """The paper's released genotypes (RELEASED_GENOTYPES/*.yaml) built on `arch`, by name."""
    found = {}
    for path in sorted(Path(genotype_dir).glob("*.yaml")):
        meta = yaml.safe_load(path.read_text())
        if meta.get("arch") == arch:
            found[meta["name"]] = path
    return found


def released_for_budget(config: dict, genotype_dir: Path, budget: int) -> Path:
    """The released genotype whose cost is closest to `budget`, within the search tolerance."""
    arch = config["teacher"]["arch"]
    size, classes = input_size(config)
    kind, tolerance = config["search"]["budget_kind"], config["search"]["tolerance"]
    if kind == "latency":
        raise BlockswapError(
            "search.use_released_genotypes: released genotypes are chosen by params or macs, not by a latency budget"
        )
    best = None
    for path in released_genotypes(genotype_dir, arch).values():
        cost = getattr(NetworkSpec.create(arch, str(path), classes).cost(size), kind)
        if abs(cost - budget) < tolerance * budget and (best is None or abs(cost - budget) < best[0]):
            best = (abs(cost - budget), path)
    if best is None:
        raise BlockswapError(f"no released {arch} genotype lies within +-{tolerance:.1%} of the budget {budget} {kind}")
    return best[1]


def lockstep_groups(config: dict, plans: dict[str, NetworkPlan]) -> dict[str, list[str]]:
    """Random students trained together, `ablation.lockstep` at a time, per budget (a group's name is
    a rule name); none when each is its own job."""
    size = config["ablation"].get("lockstep", 1)
    if size <= 1:
        return {}
    groups = {}
    for budget in ablation_budgets(config):
        names = [p.name for p in plans.values() if p.method == "random" and p.budget == budget]
        for start in range(0, len(names), size):
            groups[f"lockstep_{budget}_{start // size}"] = names[start : start + size]
    return groups


def plan_notes(config: dict) -> list[str]:
    """What the plan could not do as asked (e.g. no single-blocktype network near a budget)."""
    if config["baselines"]["moonshine"] != "auto":
        return []
    return [note for _, note in (closest_single_blocktype(config, b) for b in config["search"]["budgets"]) if note]


def plan_networks(config: dict, genotype_dir: Path, results: str) -> dict[str, NetworkPlan]:
    """Every student (and the teacher) of the run, keyed by name."""
    check_plan(config)
    teacher = config["teacher"]["arch"]
    seeds = tuple(config["seeds"])
    plans = [NetworkPlan("teacher", "teacher", teacher, "S", seeds=seeds)]
    search = config["search"]
    for budget in search["budgets"]:
        if search["use_released_genotypes"]:
            genotype, searched = str(released_for_budget(config, genotype_dir, budget)), False
        else:
            genotype, searched = f"{results}/search/{budget}/student.json", True
        plans.append(NetworkPlan(f"blockswap-{budget}", "blockswap", teacher, genotype, budget, searched, seeds))
    for arch in config["baselines"]["reduced"]:
        name = parse_arch(arch).name
        plans.append(NetworkPlan(f"reduced-{name}", "reduced", name, "S", seeds=seeds))
    moonshine = config["baselines"]["moonshine"]
    if moonshine == "auto":
        moonshine = [name for name, _ in (closest_single_blocktype(config, b) for b in search["budgets"]) if name]
    for name in dict.fromkeys(moonshine):
        block = parse_block(name)
        plans.append(NetworkPlan(f"moonshine-{block.slug}", "moonshine", teacher, block.name, seeds=seeds))
    if config["baselines"]["snip"]:
        if search["budget_kind"] != "params":
            raise BlockswapError("baselines.snip: SNIP prunes to a parameter count; it needs search.budget_kind params")
        for budget in search["budgets"]:
            # Pruned to the budget itself, as the authors' SNIP script prunes to Table 2's printed
            # sizes (811.4K -> 811,400), not to the BlockSwap student's exact count.
            plans.append(NetworkPlan(f"snip-{budget}", "snip", teacher, "S", budget, seeds=seeds, prune_params=budget))
    best_budget = samples_budget(config)
    # The samples ablation's best-of-N students are distilled from every teacher, as Table 2's rows:
    # the paper's best-of-1000 (4.21 %) is its 3-teacher mean, and one run's noise (sigma 0.13-0.37 in
    # Table 2) is as large as the gaps between N = 10, 100 and 1000.
    for n in config["ablation"]["samples"]:
        plans.append(
            NetworkPlan(
                f"bestof-{n}",
                "bestof",
                teacher,
                f"{results}/search/{best_budget}/bestof-{n}.json",
                best_budget,
                True,
                seeds,
                first=n,
            )
        )
    random_seeds, random_teacher = random_student_seeds(config)
    for budget in ablation_budgets(config):
        for i in range(config["ablation"]["random_students"]):
            plans.append(
                NetworkPlan(
                    f"random-{budget}-{i}",
                    "random",
                    teacher,
                    f"{results}/ablation/{budget}/random-{i}.json",
                    budget,
                    True,
                    random_seeds,
                    teacher_seed=random_teacher,
                )
            )
    for budget in comparison_budgets(config):
        for seed in comparison_trained_seeds(config):
            for method, folder in (("randomsearch", "random"), ("evolution", "evolution")):
                plans.append(
                    NetworkPlan(
                        f"{method}-{budget}-s{seed}",
                        method,
                        teacher,
                        f"{results}/compare/{budget}/{folder}/seed-{seed}/student.json",
                        budget,
                        True,
                        ablation_seeds(config),
                    )
                )
            for n in config["comparison"].get("bestof", []):
                plans.append(
                    NetworkPlan(
                        f"bestofn-{budget}-{n}-s{seed}",
                        "bestofn",
                        teacher,
                        f"{results}/compare/{budget}/random/seed-{seed}/bestof-{n}.json",
                        budget,
                        True,
                        ablation_seeds(config),
                        first=n,
                    )
                )
    return {p.name: p for p in plans}
