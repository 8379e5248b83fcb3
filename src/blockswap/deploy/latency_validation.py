"""How good is a latency table? Predicted (sum of parts) against measured end-to-end latency of
random students of the table's space, and how well the table and the cheap counts (params, MACs)
rank networks by measured latency; and the whole-network timings a setting's calibration is fitted
to (`calibrate`, the line itself in `calibration`) (docs/deployment.md). How the counts rank trained
networks by their measured latency is a table of the run's (reporting/latency_ranks.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..networks.architectures import NetworkSpec
from ..networks.blocks import BlockType, candidate_set
from ..networks.genotype import Genotype
from ..networks.models import build_model
from ..search.sampling import CostTable
from ..stats.ranks import finite_or_none, tau_with_interval
from . import calibration as line
from .export import deployable
from .latency import LatencyTable
from .settings import Setting
from .timing import MIN_RUNS, MIN_WARMUP, load_average, measure_model

# The calibration's networks come from a random stream of their own, so that a check run with the
# same seed times other students than the ones the calibration was fitted on.
CALIBRATION_STREAM = 1
# Calibration networks are picked, spread over the predicted range, from this many random draws each.
POOL_PER_NETWORK = 20


def draw_genotypes(types: Sequence[Sequence[BlockType]], samples: int, seed: int | Sequence[int]) -> list[Genotype]:
    """`samples` distinct genotypes, each block's type uniform over the types that fit it (seeded)."""
    rng = np.random.default_rng(seed)
    counts = np.array([len(t) for t in types])
    space = int(np.prod(counts.astype(float)))
    if samples < 1 or samples > space:
        raise BlockswapError(f"samples must be 1 to {space} (the networks of this space), got {samples}")
    seen: dict[bytes, Genotype] = {}
    while len(seen) < samples:
        choice = (rng.random(len(counts)) * counts).astype(np.int64)
        seen.setdefault(choice.astype(np.uint8).tobytes(), Genotype(tuple(types[s][i] for s, i in enumerate(choice))))
    return list(seen.values())


def space_size(types: Sequence[Sequence[BlockType]]) -> int:
    return int(np.prod(np.array([len(t) for t in types], dtype=float)))


def spread_genotypes(
    table: LatencyTable, key: str, types: Sequence[Sequence[BlockType]], samples: int, seed: int
) -> list[Genotype]:
    """`samples` distinct genotypes whose predicted latencies are spread evenly from the fastest to
    the slowest of a seeded pool of random draws. Uniform draws crowd the middle of the range (a sum
    of independent blocks); budgets can sit anywhere in it, so the calibration is fitted and scored
    across all of it."""
    pool = draw_genotypes(types, min(space_size(types), POOL_PER_NETWORK * samples), [seed, CALIBRATION_STREAM])
    predicted = np.array([table.predict(g, key) for g in pool])
    free = np.ones(len(pool), dtype=bool)
    chosen = []
    for target in np.linspace(predicted.min(), predicted.max(), samples):
        index = int(np.argmin(np.where(free, np.abs(predicted - target), np.inf)))
        free[index] = False
        chosen.append(pool[index])
    return chosen


def measure_genotype(table: LatencyTable, genotype: Genotype, setting: Setting, warmup: int, runs: int, seed: int):
    """Seconds of one forward pass of a whole (deployable) network of the table's space, timed on
    the table's clock."""
    r = table.record
    model = deployable(build_model(table.arch, genotype, r["num_classes"], seed=seed))
    return measure_model(model, tuple(r["input_size"]), setting, warmup, runs, seed, clock=r.get("clock", "wall"))


def calibrate(
    table: LatencyTable,
    key: str,
    samples: int = line.DEFAULT_NETWORKS,
    seed: int = 0,
    warmup: int = MIN_WARMUP,
    runs: int = MIN_RUNS,
    progress: Callable[[int], None] | None = None,
    types: Sequence[Sequence[BlockType]] | None = None,
) -> dict:
    """Time `samples` whole networks spread over the setting's predicted range and fit the setting's
    calibration to them (`calibration.calibration_entry`), with how they were timed. `types`: the
    block types each slot may hold (default: every type of the table's candidate set that fits; a
    network with kept slots passes its own, so the line is fitted on the networks it will price)."""
    key = table.check_setting(key)
    if not isinstance(samples, int) or samples < line.MIN_NETWORKS:
        raise BlockswapError(f"a calibration needs at least {line.MIN_NETWORKS} validation networks, got {samples}")
    r = table.record
    if types is None:
        types = CostTable.build(
            table.arch, candidate_set(r["candidates"]), tuple(r["input_size"]), r["num_classes"]
        ).types
    if samples > space_size(types):
        raise BlockswapError(f"samples must be at most {space_size(types)} (the networks of this space), got {samples}")
    setting = Setting.parse(key)
    genotypes = spread_genotypes(table, key, types, samples, seed)
    measured = []
    for index, genotype in enumerate(genotypes):
        measured.append(measure_genotype(table, genotype, setting, warmup, runs, seed))
        if progress:
            progress(index + 1)
    entry = line.calibration_entry(
        [str(g) for g in genotypes], [table.predict(g, key) for g in genotypes], measured, seed
    )
    entry.update(clock=r.get("clock", "wall"), warmup=warmup, runs=runs, load_average=load_average())
    return entry


CHECK_COLUMNS = ["candidate", "genotype", "params", "macs", "predicted_ms", "measured_ms", "error_pct"]


def check_table(
    table: LatencyTable,
    key: str,
    samples: int,
    seed: int = 0,
    warmup: int = MIN_WARMUP,
    runs: int = MIN_RUNS,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Predicted (sum of parts) against measured end-to-end latency of `samples` random students of
    the table's space, and how well the table and the cheap counts rank them: mean absolute
    percentage error, share within +-10 %, Kendall tau of predicted, params and MACs vs measured."""

    key = table.check_setting(key)
    setting = Setting.parse(key)
    r = table.record
    size = tuple(r["input_size"])
    cost_table = CostTable.build(table.arch, candidate_set(r["candidates"]), size, r["num_classes"])
    stored = table.calibration(key)
    rows, calibrated = [], []
    for index, genotype in enumerate(draw_genotypes(cost_table.types, samples, seed)):
        cost = NetworkSpec(table.arch, genotype, r["num_classes"]).cost(size)
        measured = measure_genotype(table, genotype, setting, warmup, runs, seed)
        predicted = table.predict(genotype, key)
        if stored is not None:
            calibrated.append(line.apply(stored, predicted))
        rows.append(
            [
                index,
                str(genotype),
                cost.params,
                cost.macs,
                predicted * 1e3,
                measured * 1e3,
                100 * (predicted - measured) / measured,
            ]
        )
        if progress:
            progress(index + 1)
    frame = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    summary = check_summary(frame)
    if stored is not None:  # the table's own calibration, scored on students it was not fitted on
        error = line.error_summary(line.percent_errors(calibrated, frame["measured_ms"] / 1e3))
        summary.update(table_calibrated_mape_pct=error["mape_pct"], table_calibrated_within_10pct=error["within_10pct"])
    summary.update(setting=key, clock=r.get("clock", "wall"), samples=samples, seed=seed, load_average=load_average())
    return frame, summary


def calibration(frame: pd.DataFrame, seed: int = 0) -> dict:
    """How much of the table's error a setting's calibration (`calibration`: a line fitted to
    whole networks) removes, scored on these students: `median_ratio` is measured / predicted over
    all of them; the calibrated figures are the held-out error of the line, each student predicted
    by the line fitted on the other folds (None with fewer students than a calibration needs)."""
    ratio = finite_or_none(float((frame["measured_ms"] / frame["predicted_ms"]).median()))
    if len(frame) < line.MIN_NETWORKS:
        return {"median_ratio": ratio, "calibrated_mape_pct": None, "calibrated_within_10pct": None}
    error = line.error_summary(line.held_out_errors(frame["predicted_ms"], frame["measured_ms"], seed))
    return {
        "median_ratio": ratio,
        "calibrated_mape_pct": error["mape_pct"],
        "calibrated_within_10pct": error["within_10pct"],
    }


def check_summary(frame: pd.DataFrame) -> dict:
    error = frame["error_pct"].abs()
    summary = {
        "mape_pct": round(float(error.mean()), 3),
        "within_10pct": round(float((error <= 10).mean()), 4),
        "max_abs_error_pct": round(float(error.max()), 3),
        **calibration(frame),
    }
    for column, name in (("predicted_ms", "predicted"), ("params", "params"), ("macs", "macs")):
        tau = tau_with_interval(frame[column], frame["measured_ms"])
        summary[f"kendall_{name}"] = tau["tau"]
        summary[f"kendall_{name}_interval"] = [tau["low"], tau["high"]]
    summary["measured_ms_range"] = [
        round(float(frame["measured_ms"].min()), 4),
        round(float(frame["measured_ms"].max()), 4),
    ]
    return summary
