"""The single-blocktype network that Figure 2 and the samples table mark beside a budget.

The paper marks, per budget, a network built from one cheap block type throughout (Moonshine).
Which one is a matter of size: we take the trained single-blocktype network closest to the budget
among those strictly within the search tolerance, the rule that `baselines.moonshine: auto` uses to
train them. Where none lies that close, nothing is marked and the note says which was closest (a
network 5 % off the budget is not "a single-blocktype net of that size"). `ablation.single_blocktype`
pairs a budget with a block type explicitly, for a published pairing the rule does not reproduce.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pandas as pd

from ..errors import BlockswapError
from ..networks.blocks import parse_block

# Budget kinds whose cost is a column of the students table.
COST_COLUMNS = {"params": "params", "macs": "macs"}


@dataclass(frozen=True)
class Reference:
    network: str | None  # the students table's network name, or None when nothing is marked
    note: str


def reference_network(
    students: pd.DataFrame,
    budget: int,
    kind: str = "params",
    tolerance: float = 0.025,
    pairing: dict[int, str] | None = None,
) -> Reference:
    """The single-blocktype network marked beside `budget` (see the module docstring)."""
    moonshine = students[students["method"] == "moonshine"]
    if pairing and budget in pairing:
        block = pairing[budget]
        chosen = moonshine[moonshine["genotype"].map(lambda genotype: set(str(genotype).split()) == {block})]
        if chosen.empty:
            raise BlockswapError(
                f"the single-blocktype network all-{block} paired with budget {budget} is not in the students "
                "table (add it to baselines.moonshine)"
            )
        return Reference(chosen["network"].iloc[0], f"all-{block}, paired with the {budget} budget")
    if kind not in COST_COLUMNS:
        return Reference(None, f"no single-blocktype network is marked for a {kind} budget")
    if moonshine.empty:
        return Reference(None, "no single-blocktype network was trained")
    costs = moonshine.groupby("network")[COST_COLUMNS[kind]].first()  # sorted by name: ties are repeatable
    distance = (costs - budget).abs()
    inside = distance[distance < tolerance * budget]
    if inside.empty:
        closest = distance.idxmin()
        return Reference(
            None,
            f"no single-blocktype network lies within +-{tolerance:.1%} of {budget} {kind} "
            f"(closest: {closest} at {int(costs[closest])})",
        )
    network = inside.idxmin()
    return Reference(network, f"single-blocktype network within +-{tolerance:.1%} of the {budget} {kind} budget")


def parse_pairing(items) -> dict[int, str]:
    """`BUDGET=BLOCK` command-line pairs as a dict."""
    pairing = {}
    for item in items or ():
        budget, sep, block = item.partition("=")
        if not sep or not budget.strip().isdigit() or not block.strip():
            raise BlockswapError(f"--single-blocktype {item!r}: expected BUDGET=BLOCK, e.g. 200000=BG(2,4)")
        pairing[int(budget)] = block.strip()
    return pairing


def reference_options(config: dict) -> list[str]:
    """The command-line options that give `blockswap report samples` and `blockswap figure
    random_students` the configuration's marking rule."""
    search = config["search"]
    options = ["--budget-kind", search["budget_kind"], "--tolerance", repr(float(search["tolerance"]))]
    for budget, block in (config["ablation"].get("single_blocktype") or {}).items():
        options += ["--single-blocktype", f"{int(budget)}={parse_block(block).name}"]  # the table's spelling
    return options


def reference_args(config: dict) -> str:
    """`reference_options` quoted for a shell command."""
    return shlex.join(reference_options(config))
