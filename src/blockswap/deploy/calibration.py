"""A latency table's per-setting calibration: from the sum of parts to what whole networks take.

The table predicts a network as stem + head + its blocks, each timed alone. Whole networks differ
from that sum in two ways the table cannot see. Some costs come once per block call whatever the
block computes: the launch and synchronisation every isolated timing pays (on a GPU at a large
batch, a block timed alone starts on an idle device that the whole network keeps busy), or the
dispatch between blocks that no timing holds. Every network of an architecture has the same number
of blocks, stem and head, so these add a constant. Other costs grow with the work (caches, overlap
of kernels), a share of the prediction. So the calibration is one line per setting,

    measured = slope * predicted + intercept,

fitted to whole-network timings by least squares on the *relative* residual (a 1 ms miss weighs as
much on a 5 ms network as 10 ms on a 50 ms one, as a budget's tolerance does). Two numbers need few
validation networks, and a line keeps a network's calibrated time a sum of per-block terms, which the
sampler's vectorised draw and exact band count rely on.

The error a budget can trust is the held-out one: the validation networks are split into `FOLDS`
seeded folds, each fold is predicted by the line fitted on the others, and the percentage errors of
those out-of-fold predictions give the held-out MAPE and the share within +-10 %. A latency budget
is refused in a setting whose held-out MAPE exceeds `MAX_HELD_OUT_MAPE_PCT`, or that has no
calibration at all (docs/deployment.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import BlockswapError
from ..numeric import is_positive_number

FOLDS = 5  # held-out folds: each network is predicted once by a line that never saw it
MIN_NETWORKS = 10  # fewest validation networks: two per fold
DEFAULT_NETWORKS = 40
MAX_HELD_OUT_MAPE_PCT = 10.0  # above this held-out error a latency budget is refused
WITHIN_PCT = 10.0  # the "within +-10 %" share
MODEL = "linear"  # measured = slope * predicted + intercept
# Stored figures are recomputed from the stored timings on every read; they agree to float rounding
# (relative), and an intercept near zero to a picosecond (absolute).
AGREE, AGREE_SECONDS = 1e-6, 1e-12


def fit_line(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) minimising the sum of ((slope * p + intercept - m) / m)^2."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    design = np.column_stack([p / m, 1 / m])
    (slope, intercept), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
    return float(slope), float(intercept)


def percent_errors(predicted, measured) -> np.ndarray:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return 100 * (p - m) / m


def held_out_errors(predicted: Sequence[float], measured: Sequence[float], seed: int, folds: int = FOLDS) -> np.ndarray:
    """Percentage error of each network predicted by the line fitted on the other folds (in the
    networks' order). The folds are a seeded permutation, so the figure is reproducible."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    errors = np.empty(len(p))
    for fold in np.array_split(np.random.default_rng(seed).permutation(len(p)), folds):
        train = np.setdiff1d(np.arange(len(p)), fold)
        slope, intercept = fit_line(p[train], m[train])
        errors[fold] = percent_errors(slope * p[fold] + intercept, m[fold])
    return errors


def error_summary(errors: np.ndarray) -> dict:
    error = np.abs(np.asarray(errors, float))
    return {
        "mape_pct": round(float(error.mean()), 3),
        "within_10pct": round(float((error <= WITHIN_PCT).mean()), 4),
        "max_abs_error_pct": round(float(error.max()), 3),
    }


def calibration_entry(
    genotypes: Sequence[str], predicted: Sequence[float], measured: Sequence[float], seed: int
) -> dict:
    """The stored calibration of one setting: the line, the raw and held-out errors, and the
    timings they come from (seconds), so that a reader can recompute all of it."""
    if len(measured) < MIN_NETWORKS:
        raise BlockswapError(f"a calibration needs at least {MIN_NETWORKS} networks, got {len(measured)}")
    slope, intercept = fit_line(predicted, measured)
    return {
        "model": MODEL,
        "slope": slope,
        "intercept_seconds": intercept,
        "folds": FOLDS,
        "seed": seed,
        "raw": error_summary(percent_errors(predicted, measured)),
        "held_out": error_summary(held_out_errors(predicted, measured, seed)),
        "networks": [
            {"genotype": g, "predicted_seconds": float(p), "measured_seconds": float(m)}
            for g, p, m in zip(genotypes, predicted, measured)
        ],
    }


def _agree(a, b) -> bool:
    return isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=AGREE, abs_tol=AGREE_SECONDS)


def entry_problem(entry, predict: Callable[[str], float]) -> str | None:
    """What is wrong with a stored calibration (a damaged or hand-edited copy), or None.
    `predict(genotype)` is the table's own prediction in seconds: the calibration must have been
    fitted on these block times, and its line and errors must be what its timings give."""
    if not isinstance(entry, dict) or entry.get("model") != MODEL:
        return f"it is not a {MODEL} calibration"
    networks = entry.get("networks")
    if not (
        isinstance(networks, list) and len(networks) >= MIN_NETWORKS and all(isinstance(n, dict) for n in networks)
    ):
        return f"it lacks the timings of at least {MIN_NETWORKS} validation networks"
    if not all(
        isinstance(n.get("genotype"), str)
        and is_positive_number(n.get("predicted_seconds"))
        and is_positive_number(n.get("measured_seconds"))
        for n in networks
    ):
        return "a validation network lacks its genotype or a positive time"
    if not (isinstance(entry.get("seed"), int) and entry.get("folds") == FOLDS):
        return f"it lacks its fold seed or does not use {FOLDS} folds"
    for n in networks:
        try:
            now = predict(n["genotype"])
        except BlockswapError as err:  # a genotype this table cannot price
            return f"validation network {n['genotype'][:40]!r}: {str(err)[:80]}"
        if not _agree(n["predicted_seconds"], now):
            return "it was fitted on other block times than this table's"
    predicted = [n["predicted_seconds"] for n in networks]
    measured = [n["measured_seconds"] for n in networks]
    again = calibration_entry([n["genotype"] for n in networks], predicted, measured, entry["seed"])
    for key in ("slope", "intercept_seconds"):
        if not _agree(entry.get(key), again[key]):
            return f"its {key} is not what its timings give"
    for part in ("raw", "held_out"):
        stored = entry.get(part)
        if not (isinstance(stored, dict) and all(_agree(stored.get(k), v) for k, v in again[part].items())):
            return f"its {part} error is not what its timings give"
    if not entry["slope"] > 0:
        return "its slope is not positive (the table does not order these networks)"
    return None


def apply(entry: dict, seconds: float) -> float:
    return entry["slope"] * seconds + entry["intercept_seconds"]
