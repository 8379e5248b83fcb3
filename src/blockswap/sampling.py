"""Step 1 of BlockSwap (docs/paper.md s.1): random mixed-block students inside a budget.

Each block's type is drawn uniformly from the candidate types that fit that block's widths; a
proposal is kept when its cost lies strictly within +-tolerance of the budget. Costs come from a
per-slot table computed once from the layer specs, so a draw costs a few array lookups and
thousands of proposals are checked per millisecond (vectorised with numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .blocks import BlockType, valid_types
from .errors import BlockswapError
from .genotype import Genotype
from .layers import Classifier, Cost, sequence_cost
from .models import Architecture

BUDGET_KINDS = ("params", "macs")
DEFAULT_TOLERANCE = 0.025  # released code: strictly within +-2.5 % of the budget
DRAW_CHUNK = 20_000  # proposals drawn per vectorised step
MAX_DRAWS_PER_SAMPLE = 20_000  # give up after this many proposals per requested sample
CANDIDATE_COLUMNS = ["candidate", "genotype", "params", "macs", "ops"]


@dataclass
class CostTable:
    """Per slot: the valid types and their costs; plus the fixed cost of stem and head."""

    arch: Architecture
    types: list[list[BlockType]]
    costs: list[np.ndarray]  # per slot: (n_types, 3) of params, macs, ops
    fixed: np.ndarray  # (3,)

    @classmethod
    def build(cls, arch: Architecture, candidates, input_size, num_classes: int) -> "CostTable":
        sizes = arch.feature_sizes(input_size)
        types, costs = [], []
        for i, (slot, (h, w)) in enumerate(zip(arch.slots, sizes)):
            fits = valid_types(tuple(candidates), slot.cin, slot.cout, slot.stride)
            if not fits:
                raise BlockswapError(f"no candidate type fits block {i} of {arch.name} ({slot.cin}->{slot.cout})")
            types.append(fits)
            rows = [t.layout(slot.cin, slot.cout, slot.stride).cost(h, w)[0] for t in fits]
            costs.append(np.array([[c.params, c.macs, c.ops] for c in rows], dtype=np.int64))
        stem, _, _ = sequence_cost(arch.stem, *input_size)
        head, _, _ = sequence_cost(arch.head + (Classifier(arch.features, num_classes),), *sizes[-1])
        fixed = stem + head
        return cls(arch, types, costs, np.array([fixed.params, fixed.macs, fixed.ops], dtype=np.int64))

    def column(self, kind: str) -> int:
        return BUDGET_KINDS.index(kind)

    def achievable(self, kind: str) -> tuple[int, int]:
        k = self.column(kind)
        low = self.fixed[k] + sum(int(c[:, k].min()) for c in self.costs)
        high = self.fixed[k] + sum(int(c[:, k].max()) for c in self.costs)
        return int(low), int(high)

    def totals(self, choices: np.ndarray) -> np.ndarray:
        """(n, slots) type indices -> (n, 3) total params, macs, ops."""
        total = np.broadcast_to(self.fixed, (len(choices), 3)).copy()
        for slot, costs in enumerate(self.costs):
            total += costs[choices[:, slot]]
        return total

    def genotype(self, choice) -> Genotype:
        return Genotype(tuple(self.types[s][int(i)] for s, i in enumerate(choice)))


def check_budget(table: CostTable, budget: float, budget_kind: str, tolerance: float) -> None:
    """Fail at once, with the achievable range, when no network of the space lies in the band."""
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    cheapest, dearest = table.achievable(budget_kind)
    if high <= cheapest or low >= dearest:
        raise BlockswapError(
            f"budget {budget:g} {budget_kind} (+-{tolerance:.1%}) is outside what {table.arch.name} can reach "
            f"with these candidates: {cheapest} to {dearest} {budget_kind}"
        )


def sample_candidates(
    table: CostTable,
    budget: float,
    samples: int,
    seed: int,
    budget_kind: str = "params",
    tolerance: float = DEFAULT_TOLERANCE,
) -> pd.DataFrame:
    """`samples` distinct genotypes whose cost is strictly within +-tolerance of `budget`.

    The same (table, budget, seed) always gives the same rows in the same order.
    """
    if budget_kind not in BUDGET_KINDS:
        raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {budget_kind!r}")
    if not 0 < tolerance < 1:
        raise BlockswapError(f"tolerance must be a fraction between 0 and 1, got {tolerance}")
    if samples < 1:
        raise BlockswapError(f"samples must be at least 1, got {samples}")
    check_budget(table, budget, budget_kind, tolerance)
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    rng = np.random.default_rng(seed)
    column = table.column(budget_kind)
    counts = np.array([len(t) for t in table.types])
    found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    draws, max_draws = 0, MAX_DRAWS_PER_SAMPLE * samples
    while len(found) < samples and draws < max_draws:
        # Uniform over the valid types of each slot: floor(u * count) per column.
        choices = (rng.random((DRAW_CHUNK, len(counts))) * counts).astype(np.int64)
        draws += DRAW_CHUNK
        totals = table.totals(choices)
        keep = (totals[:, column] > low) & (totals[:, column] < high)
        for choice, total in zip(choices[keep], totals[keep]):
            key = choice.astype(np.uint8).tobytes()
            if key not in found:
                found[key] = (choice, total)
                if len(found) == samples:
                    break
    if len(found) < samples:
        raise BlockswapError(
            f"found only {len(found)} distinct candidates within +-{tolerance:.1%} of {budget:g} {budget_kind} "
            f"after {draws} draws; ask for fewer samples or widen the tolerance"
        )
    rows = []
    for index, (choice, total) in enumerate(found.values()):
        rows.append([index, str(table.genotype(choice)), int(total[0]), int(total[1]), int(total[2])])
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def read_candidates(path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise BlockswapError(f"candidates file {path} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BlockswapError(f"candidates file {path} is not a CSV: {str(err).splitlines()[0]}") from None
    missing = [c for c in CANDIDATE_COLUMNS if c not in frame.columns]
    if missing:
        raise BlockswapError(f"{path} is not a candidates file: it lacks {', '.join(missing)}")
    if frame["candidate"].duplicated().any():
        raise BlockswapError(f"{path} lists a candidate index twice")
    return frame


def cost_of(table: CostTable, genotype: Genotype) -> Cost:
    """Cost of one genotype through the table (used to cross-check rows)."""
    choice = np.array([[table.types[s].index(t) for s, t in enumerate(genotype)]])
    params, macs, ops = table.totals(choice)[0]
    return Cost(int(params), int(macs), int(ops))
