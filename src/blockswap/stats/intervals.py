"""Confidence intervals: the percentile bootstrap over resampled statistics, and the Student-t
interval of a mean over independent runs."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def interval(samples: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap interval at CONFIDENCE, ignoring resamples where the statistic is
    undefined (a resample of a small n can be constant); NaN when none is defined."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(samples, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def mean_interval(values) -> tuple[float, float, float, int]:
    """Mean and its two-sided 95 % Student-t interval over independent runs (seeds), and n; the
    interval is NaN for a single run."""
    from scipy.stats import t  # scipy.stats takes about 0.4 s to import: not at every CLI start-up

    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n
