"""Step 1 of BlockSwap (docs/paper.md s.1): random mixed-block students inside a budget.

Each block's type is drawn uniformly from the candidate types that fit that block's widths; a
proposal is kept when its cost lies strictly within +-tolerance of the budget. Costs come from a
per-slot table computed once from the layer specs, so a draw costs a few array lookups and
thousands of proposals are checked per millisecond (vectorised with numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..networks.architectures import Architecture
from ..networks.blocks import BlockType, valid_types
from ..networks.genotype import Genotype
from ..networks.layers import Cost

BUDGET_KINDS = ("params", "macs", "latency")
BUDGET_UNITS = {"params": "params", "macs": "macs", "latency": "microseconds of latency"}
# Column of each kind in a table's costs; latency (whole microseconds, from a measured latency table,
# blockswap.deploy.latency) is there only after `with_latency`.
COST_INDEX = {"params": 0, "macs": 1, "ops": 2, "latency": 3}
LATENCY_COLUMN = "latency_us"
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
    def build(
        cls, arch: Architecture, candidates, input_size, num_classes: int, kept: dict[int, BlockType] | None = None
    ) -> CostTable:
        """`kept`: slots whose type is fixed (a pretrained teacher's own blocks that a student keeps);
        every other slot draws from `candidates`."""
        sizes = arch.feature_sizes(input_size)
        kept = kept or {}
        outside = sorted(i for i in kept if not 0 <= i < arch.depth)
        if outside:
            raise BlockswapError(f"{arch.name} has blocks 0 to {arch.depth - 1}; no block {outside[0]} to keep")
        types, costs = [], []
        for i, (slot, (h, w)) in enumerate(zip(arch.slots, sizes)):
            pool = (kept[i],) if i in kept else tuple(candidates)
            fits = valid_types(pool, slot.cin, slot.cout, slot.stride)
            if i in kept and not fits:
                raise BlockswapError(f"block {i} of {arch.name} cannot be {kept[i].problem_at(slot.cin, slot.cout)}")
            if not fits:
                raise BlockswapError(f"no candidate type fits block {i} of {arch.name} ({slot.cin}->{slot.cout})")
            types.append(fits)
            rows = [t.layout(slot.cin, slot.cout, slot.stride).cost(h, w)[0] for t in fits]
            costs.append(np.array([[c.params, c.macs, c.ops] for c in rows], dtype=np.int64))
        fixed = arch.fixed_cost(input_size, num_classes)
        return cls(arch, types, costs, np.array([fixed.params, fixed.macs, fixed.ops], dtype=np.int64))

    def column(self, kind: str) -> int:
        if kind not in BUDGET_KINDS:
            raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {kind!r}")
        if COST_INDEX[kind] >= len(self.fixed):
            raise BlockswapError(
                f"{kind} budgets need a measured latency table (blockswap latency "
                f"{self.arch.name} --out FILE, then --latency-table FILE)"
            )
        return COST_INDEX[kind]

    @property
    def has_latency(self) -> bool:
        return len(self.fixed) > COST_INDEX["latency"]

    def with_latency(self, slots: list[np.ndarray], fixed: int) -> CostTable:
        """This table plus a latency column: per slot, whole microseconds of each of its types (in
        `types` order), and of stem + head (`LatencyTable.slot_microseconds`)."""
        costs = [np.column_stack([c[:, :3], np.asarray(s, dtype=np.int64)]) for c, s in zip(self.costs, slots)]
        return CostTable(self.arch, self.types, costs, np.append(self.fixed[:3], np.int64(fixed)))

    def achievable(self, kind: str) -> tuple[int, int]:
        k = self.column(kind)
        low = self.fixed[k] + sum(int(c[:, k].min()) for c in self.costs)
        high = self.fixed[k] + sum(int(c[:, k].max()) for c in self.costs)
        return int(low), int(high)

    def totals(self, choices: np.ndarray) -> np.ndarray:
        """(n, slots) type indices -> (n, 3) total params, macs, ops (and latency, when the table has it)."""
        total = np.broadcast_to(self.fixed, (len(choices), len(self.fixed))).copy()
        for slot, costs in enumerate(self.costs):
            total += costs[choices[:, slot]]
        return total

    def genotype(self, choice) -> Genotype:
        return Genotype(tuple(self.types[s][int(i)] for s, i in enumerate(choice)))


def check_budget(
    table: CostTable, budget: float, budget_kind: str, tolerance: float, samples: int = 1, samples_name: str = "samples"
) -> int:
    """Fail at once when the band holds fewer than `samples` distinct networks of the space: with the
    achievable range when the band lies outside it, else with the exact count (`count_in_band`).
    Returns the count. `samples_name` is what the caller calls the number of samples (a config key)."""
    if not (math.isfinite(budget) and budget > 0):
        raise BlockswapError(f"budget must be a positive finite number, got {budget}")
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    cheapest, dearest = table.achievable(budget_kind)
    if high <= cheapest or low >= dearest:
        unit = BUDGET_UNITS[budget_kind]
        raise BlockswapError(
            f"budget {budget:g} {unit} (+-{tolerance:.1%}) is outside what {table.arch.name} can reach "
            f"with these candidates: {cheapest} to {dearest} {unit}"
        )
    count = count_in_band(table, budget, budget_kind, tolerance)
    if count < samples:
        raise BlockswapError(
            f"budget {budget:g} {budget_kind} (+-{tolerance:.1%}) holds only {count} distinct {table.arch.name} "
            f"networks of these candidates, fewer than {samples_name} ({samples}); allowed: {samples_name} at most "
            f"{count}, or a wider tolerance or another budget"
        )
    return count


# --- counting the networks in a band ----------------------------------------------------------------

LIMB_BITS = 32  # counts are held as base-2^32 digits in uint64, so sums of a slot's terms cannot overflow
# Above this many cost steps a dense table (steps x limbs x 8 bytes, a few at a time) would take
# hundreds of MB; the sparse programme keeps only the partial costs that occur. WRN-28-10's params
# span ~2.2M steps, so every shipped architecture counts densely.
MAX_DENSE_COSTS = 1 << 22


def count_in_band(
    table: CostTable, budget: float, budget_kind: str = "params", tolerance: float = DEFAULT_TOLERANCE
) -> int:
    """The exact number of distinct genotypes whose cost lies strictly within +-tolerance of `budget`,
    i.e. how many candidates `sample_candidates` can find at most.

    A dynamic programme over slots: after each slot, for every partial cost, the number of choices of
    the slots so far that reach it; partial costs that already exceed the band's upper bound are
    dropped (costs only grow). Costs are shifted by each slot's cheapest type and divided by the gcd
    of all shifts, so the partial costs are small integers (WRN-40-2 params: at most ~140K steps).
    Counts reach 23^18 ~ 3e24 > 2^64, so they are exact multi-limb integers (base 2^32 digits)."""
    if budget_kind not in BUDGET_KINDS:
        raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {budget_kind!r}")
    if not (math.isfinite(budget) and math.isfinite(tolerance)):
        raise BlockswapError(f"budget and tolerance must be finite numbers, got {budget} and {tolerance}")
    column = table.column(budget_kind)
    cheapest = [int(costs[:, column].min()) for costs in table.costs]
    shifts = [costs[:, column] - least for costs, least in zip(table.costs, cheapest)]
    step = math.gcd(*(int(s) for slot in shifts for s in slot)) or 1  # 0 when every slot has one cost
    base = int(table.fixed[column]) + sum(cheapest)
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    if base >= high:
        return 0
    # Largest partial cost (in steps) that can still end inside the band; +1 guards the float floor,
    # and the exact strict comparison happens once at the end, as the sampler makes it.
    top = int((high - base) // step) + 1
    # Every count is at most the number of genotypes of the whole space: enough limbs for that.
    limbs = max(1, -(-math.prod(len(t) for t in table.types).bit_length() // LIMB_BITS))
    slots = [np.unique(shift // step, return_counts=True) for shift in shifts]
    count = _count_dense if top < MAX_DENSE_COSTS else _count_sparse
    values, counts = count(slots, top, limbs)
    totals = base + step * values
    inside = (totals > low) & (totals < high)  # int64 against float, exactly as sample_candidates does
    return sum(int(counts[j][inside].sum()) << (LIMB_BITS * j) for j in range(limbs))


def _carry(counts: np.ndarray) -> np.ndarray:
    """Normalise (limbs, n) base-2^32 digits in place: push each digit's overflow into the next."""
    mask = np.uint64((1 << LIMB_BITS) - 1)
    for j in range(len(counts) - 1):
        counts[j + 1] += counts[j] >> np.uint64(LIMB_BITS)
        counts[j] &= mask
    return counts


def _count_dense(slots, top: int, limbs: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts for every partial cost 0..top, one array per limb: a slot adds its shifted copies."""
    counts = np.zeros((limbs, top + 1), dtype=np.uint64)
    counts[0, 0] = 1
    for offsets, multiplicity in slots:
        after = np.zeros_like(counts)
        for offset, times in zip(offsets.tolist(), multiplicity.tolist()):
            if offset > top:
                break  # offsets are sorted
            # Digits stay below 2^32 before the slot, so a slot's sum stays below 2^32 x types.
            after[:, offset:] += counts[:, : top + 1 - offset] * np.uint64(times)
        counts = _carry(after)
    return np.arange(top + 1), counts


def _count_sparse(slots, top: int, limbs: int) -> tuple[np.ndarray, np.ndarray]:
    """The same programme over only the partial costs that occur (sorted), for cost ranges too wide
    for a dense table (e.g. MACs at odd image sizes, where the gcd of the costs is small)."""
    values = np.zeros(1, dtype=np.int64)
    counts = np.zeros((limbs, 1), dtype=np.uint64)
    counts[0, 0] = 1
    for offsets, multiplicity in slots:
        reached = (values[:, None] + offsets[None, :]).ravel()
        ways = (counts[:, :, None] * multiplicity.astype(np.uint64)[None, None, :]).reshape(limbs, -1)
        keep = reached <= top
        reached, ways = reached[keep], ways[:, keep]
        order = np.argsort(reached, kind="stable")
        reached, ways = reached[order], ways[:, order]
        starts = np.flatnonzero(np.r_[True, reached[1:] != reached[:-1]])
        values, counts = reached[starts], _carry(np.add.reduceat(ways, starts, axis=1))
    return values, counts


def sample_candidates(
    table: CostTable,
    budget: float,
    samples: int,
    seed: int,
    budget_kind: str = "params",
    tolerance: float = DEFAULT_TOLERANCE,
    limits: dict | None = None,
) -> pd.DataFrame:
    """`samples` distinct genotypes whose cost is strictly within +-tolerance of `budget` and, for
    each kind of `limits` (e.g. {"latency": 900} with a latency column), at most that limit.

    The same (table, budget, limits, seed) always gives the same rows in the same order.
    """
    if budget_kind not in BUDGET_KINDS:
        raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {budget_kind!r}")
    if not 0 < tolerance < 1:
        raise BlockswapError(f"tolerance must be a fraction between 0 and 1, got {tolerance}")
    if samples < 1:
        raise BlockswapError(f"samples must be at least 1, got {samples}")
    check_budget(table, budget, budget_kind, tolerance, samples)
    check_limits(table, limits)
    rng = np.random.default_rng(seed)
    counts = np.array([len(t) for t in table.types])
    found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    draws, max_draws = 0, MAX_DRAWS_PER_SAMPLE * samples
    while len(found) < samples and draws < max_draws:
        # Uniform over the valid types of each slot: floor(u * count) per column.
        choices = (rng.random((DRAW_CHUNK, len(counts))) * counts).astype(np.int64)
        draws += DRAW_CHUNK
        totals = table.totals(choices)
        keep = within_budget(table, totals, budget, budget_kind, tolerance, limits)
        for choice, total in zip(choices[keep], totals[keep]):
            key = choice.astype(np.uint8).tobytes()
            if key not in found:
                found[key] = (choice, total)
                if len(found) == samples:
                    break
    if len(found) < samples:
        raise BlockswapError(
            f"found only {len(found)} distinct candidates within +-{tolerance:.1%} of {budget:g} {budget_kind}"
            f"{describe_limits(limits)} after {draws} draws; ask for fewer samples or widen the tolerance"
            + (" or the limits" if limits else "")
        )
    rows = []
    for index, (choice, total) in enumerate(found.values()):
        rows.append([index, str(table.genotype(choice)), *(int(t) for t in total)])
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS + ([LATENCY_COLUMN] if table.has_latency else []))


# --- combined constraints (a band on one kind, ceilings on others) ----------------------------------


def describe_limits(limits: dict | None) -> str:
    return "".join(f", {kind} <= {value:g}" for kind, value in (limits or {}).items())


def check_limits(table: CostTable, limits: dict | None) -> None:
    """Each ceiling names a kind this table has and can be met by its cheapest network."""
    for kind, value in (limits or {}).items():
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise BlockswapError(f"limit {kind} must be a positive finite number, got {value!r}")
        cheapest, _ = table.achievable(kind)
        if value < cheapest:
            raise BlockswapError(
                f"limit {kind} <= {value:g} is below the cheapest {table.arch.name} of these "
                f"candidates ({cheapest} {kind})"
            )


def within_budget(
    table: CostTable, totals: np.ndarray, budget: float, budget_kind: str, tolerance: float, limits: dict | None = None
) -> np.ndarray:
    """Which rows of `totals` (`CostTable.totals`) lie strictly inside the budget's band and at or
    under every limit: the one acceptance test of a candidate, for sampling and for any search."""
    column = table.column(budget_kind)
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    keep = (totals[:, column] > low) & (totals[:, column] < high)
    for kind, value in (limits or {}).items():
        keep &= totals[:, table.column(kind)] <= value
    return keep


def parse_limits(items) -> dict:
    """`KIND=VALUE` items (e.g. params=400000, latency=900) as a mapping, each kind once."""
    limits: dict = {}
    for item in items or []:
        kind, sep, value = str(item).partition("=")
        if not sep or kind not in BUDGET_KINDS:
            raise BlockswapError(f"a limit is KIND=VALUE with KIND one of {', '.join(BUDGET_KINDS)}, got {item!r}")
        if kind in limits:
            raise BlockswapError(f"limit {kind} is given twice")
        try:
            limits[kind] = float(value)
        except ValueError:
            raise BlockswapError(f"limit {kind} must be a number, got {value!r}") from None
    return limits


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
    params, macs, ops = table.totals(choice)[0][:3]
    return Cost(int(params), int(macs), int(ops))
