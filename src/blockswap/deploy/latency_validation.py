"""How good is a latency table? Predicted (sum of parts) against measured end-to-end latency of
random students of the table's space, and how well the table and the cheap counts (params, MACs)
rank networks by measured latency (docs/deployment.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..networks.blocks import BlockType, candidate_set
from ..networks.genotype import Genotype
from ..networks.models import NetworkSpec, build_model
from ..search.sampling import CostTable
from ..stats.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, interval
from ..stats.ranks import kendall_tau_b
from .export import deployable
from .latency import LATENCY_COLUMN, LatencyTable
from .timing import MIN_RUNS, MIN_WARMUP, Setting, load_average, measure_model


def draw_genotypes(types: Sequence[Sequence[BlockType]], samples: int, seed: int) -> list[Genotype]:
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
    rows = []
    for index, genotype in enumerate(draw_genotypes(cost_table.types, samples, seed)):
        cost = NetworkSpec(table.arch, genotype, r["num_classes"]).cost(size)
        model = deployable(build_model(table.arch, genotype, r["num_classes"], seed=seed))
        measured = measure_model(model, size, setting, warmup, runs, seed, clock=r.get("clock", "wall"))
        predicted = table.predict(genotype, key)
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
    summary.update(setting=key, clock=r.get("clock", "wall"), samples=samples, seed=seed, load_average=load_average())
    return frame, summary


def tau_with_interval(x, y, seed: int = BOOTSTRAP_SEED) -> dict:
    """Kendall tau-b of x with y, its 95 % paired bootstrap interval and n (None where undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3:
        return {"tau": None, "low": None, "high": None, "n": n}
    index = np.random.default_rng(seed).integers(0, n, (BOOTSTRAP_RESAMPLES, n))
    point = float(kendall_tau_b(x[None], y[None])[0])
    low, high = interval(kendall_tau_b(x[index], y[index]))
    return {"tau": _defined(point), "low": _defined(low), "high": _defined(high), "n": n}


def _defined(value: float, digits: int = 4):
    return None if not math.isfinite(value) else round(value, digits)


def calibration(frame: pd.DataFrame) -> dict:
    """How much of the table's error is one constant factor. The sum of blocks leaves out what
    happens between blocks (the call overhead of the network's own forward, allocator work), so it
    tends to under-predict by a steady share. `median_ratio` is measured / predicted over all
    students; the calibrated figures fit that ratio on the even-numbered students and score the
    odd-numbered ones with it, so they are held out. Reported, not applied: a budget in the table's
    units keeps the same networks inside it whatever the factor, and the factor belongs to a machine."""
    ratio = frame["measured_ms"] / frame["predicted_ms"]
    fit, held = frame.iloc[0::2], frame.iloc[1::2]
    if len(held) < 2:
        return {
            "median_ratio": _defined(float(ratio.median())),
            "calibrated_mape_pct": None,
            "calibrated_within_10pct": None,
        }
    factor = float((fit["measured_ms"] / fit["predicted_ms"]).median())
    error = (100 * (held["predicted_ms"] * factor - held["measured_ms"]) / held["measured_ms"]).abs()
    return {
        "median_ratio": _defined(float(ratio.median())),
        "calibrated_mape_pct": _defined(float(error.mean()), 3),
        "calibrated_within_10pct": _defined(float((error <= 10).mean())),
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


# --- trained networks ----------------------------------------------------------------------------

RANK_COLUMNS = ["measure", "kendall_tau", "low", "high", "n"]


def latency_ranks(students: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau of params, MACs and trained test error against measured latency among the
    trained networks of a run (`tables/students.csv` with its latency_ms column). A network trained
    under several seeds is one network: its latencies are averaged, so n counts distinct networks."""
    if LATENCY_COLUMN not in students.columns or students[LATENCY_COLUMN].isna().all():
        raise BlockswapError(
            "the students table has no measured latency (latency_ms is empty): "
            "set latency.enabled and rerun, or pass 'blockswap measure' files to 'report students'"
        )
    measured = students.dropna(subset=[LATENCY_COLUMN])
    networks = measured.groupby(["arch", "genotype"], sort=True).agg(
        params=("params", "first"),
        macs=("macs", "first"),
        test_error=("test_error", "mean"),
        latency=(LATENCY_COLUMN, "mean"),
    )
    rows = []
    for measure in ("params", "macs", "test_error"):
        tau = tau_with_interval(networks[measure], networks["latency"])
        rows.append([measure, tau["tau"], tau["low"], tau["high"], tau["n"]])
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def latency_ranks_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The latency ranks as printed: tau and its 95 % interval as text, and what n counts."""

    def show(value) -> str:
        return "n/a" if value is None or pd.isna(value) else f"{value:+.2f}"

    rows = [
        {
            "measure": row.measure,
            "Kendall tau with measured latency": show(row.kendall_tau),
            "95 % interval": f"[{show(row.low)}, {show(row.high)}]",
            "n": row.n,
        }
        for row in frame.itertuples(index=False)
    ]
    rows.append(
        {
            "measure": "note",
            "Kendall tau with measured latency": "n counts distinct trained networks (seeds of one network "
            "averaged); a tau near 1 means the count orders networks as their measured latency does; the "
            "interval is a 95 % bootstrap over networks",
        }
    )
    return pd.DataFrame(rows)
