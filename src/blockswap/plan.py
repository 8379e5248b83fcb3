"""Which networks a run trains and costs, derived from its (validated) workflow configuration.

Plain functions over the config dict so the workflow's `rules/common.smk` stays thin and pytest
can check the plan. Network names are file-name safe; they key every per-network result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from .blocks import candidate_set, parse_block
from .datasets import dataset_info
from .errors import BlockswapError
from .models import NetworkSpec, parse_arch
from .provenance import atomic_write_text
from .sampling import CostTable, check_budget


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    method: str
    arch: str
    genotype: str  # what `blockswap --genotype` takes: a block name, or a genotype file
    budget: Optional[int] = None
    searched: bool = False  # genotype file produced by the search stage (a DAG input)


def config_key(config: dict) -> str:
    """A short hash of a configuration as given (before schema defaults are applied)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_error_message(err: Exception) -> str:
    """One line for a configuration the workflow cannot run: the schema violation (jsonschema's
    ValidationError, which Snakemake's `validate` wraps) with the key it concerns, or our own error."""
    import jsonschema  # a Snakemake dependency; only needed when a config is wrong

    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, jsonschema.ValidationError):
            where = ".".join(str(part) for part in cause.absolute_path)
            return f"{where}: {cause.message}" if where else cause.message
    return str(err).splitlines()[0]


def save_resolved_config(config: dict, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def use_resolved_config(config: dict, path: Path) -> None:
    """Replace `config` in place by the resolved configuration saved by the main process."""
    resolved = yaml.safe_load(Path(path).read_text())
    config.clear()
    config.update(resolved)


def input_size(config: dict) -> tuple[tuple[int, int], int]:
    info = dataset_info(config["dataset"])
    size = config.get("image_size") or info.image_size
    return (size, size), info.num_classes


def released_genotypes(genotype_dir: Path, arch: str) -> dict[str, Path]:
    """The paper's released genotypes (config/genotypes/*.yaml) built on `arch`, by name."""
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
    best = None
    for path in released_genotypes(genotype_dir, arch).values():
        cost = getattr(NetworkSpec.create(arch, str(path), classes).cost(size), kind)
        if abs(cost - budget) < tolerance * budget and (best is None or abs(cost - budget) < best[0]):
            best = (abs(cost - budget), path)
    if best is None:
        raise BlockswapError(f"no released {arch} genotype lies within +-{tolerance:.1%} of the budget {budget} {kind}")
    return best[1]


def closest_single_blocktype(config: dict, budget: int) -> str:
    """Moonshine `auto`: the candidate type that, used for every block, costs closest to `budget`."""
    arch = parse_arch(config["teacher"]["arch"])
    size, classes = input_size(config)
    kind = config["search"]["budget_kind"]
    best = None
    for block in candidate_set(config["search"]["candidates"]):
        if any(block.problem_at(s.cin, s.cout, s.stride) for s in arch.slots):
            continue
        cost = getattr(NetworkSpec.create(arch, block.name, classes).cost(size), kind)
        if best is None or abs(cost - budget) < best[0]:
            best = (abs(cost - budget), block.name)
    return best[1]


def plan_networks(config: dict, genotype_dir: Path, results: str) -> dict[str, NetworkPlan]:
    """Every student (and the teacher) of the run, keyed by name."""
    teacher = config["teacher"]["arch"]
    plans = [NetworkPlan("teacher", "teacher", teacher, "S")]
    search = config["search"]
    if search["budgets"] and (not search["use_released_genotypes"] or config["ablation"]["random_students"]):
        # Sampling will run: an unreachable budget is a config error now, not a failed job later.
        size, classes = input_size(config)
        table = CostTable.build(parse_arch(teacher), candidate_set(search["candidates"]), size, classes)
        for budget in search["budgets"]:
            check_budget(table, budget, search["budget_kind"], search["tolerance"])
    for budget in search["budgets"]:
        if search["use_released_genotypes"]:
            genotype, searched = str(released_for_budget(config, genotype_dir, budget)), False
        else:
            genotype, searched = f"{results}/search/{budget}/student.json", True
        plans.append(NetworkPlan(f"blockswap-{budget}", "blockswap", teacher, genotype, budget, searched))
    for arch in config["baselines"]["reduced"]:
        plans.append(NetworkPlan(f"reduced-{parse_arch(arch).name}", "reduced", parse_arch(arch).name, "S"))
    moonshine = config["baselines"]["moonshine"]
    if moonshine == "auto":
        moonshine = [closest_single_blocktype(config, b) for b in search["budgets"]]
    for name in dict.fromkeys(moonshine):
        block = parse_block(name)
        plans.append(NetworkPlan(f"moonshine-{block.slug}", "moonshine", teacher, block.name))
    for budget in search["budgets"]:
        for i in range(config["ablation"]["random_students"]):
            plans.append(NetworkPlan(f"random-{budget}-{i}", "random", teacher,
                                     f"{results}/ablation/{budget}/random-{i}.json", budget, True))
    return {p.name: p for p in plans}
