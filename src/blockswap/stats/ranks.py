"""Rank correlations of each row of one array with the same row of another (a row per bootstrap
resample), so that a point estimate and its bootstrap are one call."""

from __future__ import annotations

import math

import numpy as np

from .intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, interval

# Pairwise matrices are (resamples, n, n): resamples are processed in chunks of at most this many
# float64 cells (about 64 MB), so a 300-network pooled bootstrap fits a laptop.
CHUNK_CELLS = 8_000_000


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of x (B, n) with the same row of y: (B,). NaN where either row is
    constant. Pairs tied in both count in neither denominator, as in scipy.stats.kendalltau."""
    x, y = np.atleast_2d(x).astype(float), np.atleast_2d(y).astype(float)
    b, n = x.shape
    out = np.empty(b)
    step = max(1, CHUNK_CELLS // max(1, n * n))
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    for start in range(0, b, step):
        xs, ys = x[start : start + step], y[start : start + step]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])[:, upper]
        sy = np.sign(ys[:, :, None] - ys[:, None, :])[:, upper]
        denominator = np.sqrt((sx * sx).sum(1) * (sy * sy).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + step] = np.where(denominator > 0, (sx * sy).sum(1) / denominator, np.nan)
    return out


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho (Pearson correlation of average ranks) of each row of x with y's: (B,)."""
    from scipy.stats import rankdata  # scipy.stats takes about 0.4 s to import: not at every CLI start-up

    rx = rankdata(np.atleast_2d(x), axis=1)
    ry = rankdata(np.atleast_2d(y), axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(1) / denominator, np.nan)


def partial_tau(t_xy: np.ndarray, t_xz: np.ndarray, t_yz: np.ndarray) -> np.ndarray:
    """Kendall's partial tau of x and y given z (Kendall 1942), from the three pairwise taus."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (t_xy - t_xz * t_yz) / np.sqrt((1 - t_xz**2) * (1 - t_yz**2))


def tau_with_interval(x, y, seed: int = BOOTSTRAP_SEED) -> dict:
    """Kendall tau-b of x with y, its 95 % paired bootstrap interval and n (None where undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3:
        return {"tau": None, "low": None, "high": None, "n": n}
    index = np.random.default_rng(seed).integers(0, n, (BOOTSTRAP_RESAMPLES, n))
    point = float(kendall_tau_b(x[None], y[None])[0])
    low, high = interval(kendall_tau_b(x[index], y[index]))
    return {"tau": finite_or_none(point), "low": finite_or_none(low), "high": finite_or_none(high), "n": n}


def finite_or_none(value: float, digits: int = 4) -> float | None:
    """`value` rounded, or None where it is undefined (NaN, infinite): what a JSON summary holds."""
    return None if not math.isfinite(value) else round(value, digits)
