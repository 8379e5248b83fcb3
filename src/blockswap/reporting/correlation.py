"""How well each proxy predicts trained error: rank correlations with bootstrap intervals, partial
correlations given the cost controls, and rank stability across scoring seeds (docs/proxies.md).

Signs are kept (no absolute values anywhere). Two views of one number are reported:
- `spearman`, `kendall`: the raw correlation of the proxy's value with test error; a proxy whose
  higher values predict lower error (Fisher potential) is good when these are negative.
- `quality`: Kendall tau between the proxy's predicted order (its registry sign applied) and
  accuracy, i.e. -kendall for a higher-is-better proxy and +kendall otherwise. Positive means the
  proxy ranks networks the right way round, negative that it ranks them backwards; the controls
  (params, MACs, a seeded random score) get the same treatment, so "beats params" compares like
  with like.

The bootstrap resamples networks (pairs of proxy value and error) with replacement, the same
resamples for every proxy of a budget, so intervals of different proxies are paired. The rank
correlations and intervals themselves are blockswap.stats'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ..stats.intervals import BOOTSTRAP_RESAMPLES, interval
from ..stats.ranks import kendall_tau_b, partial_tau, spearman_rho

POOLED = "pooled"  # the budget label of the table rows computed over every budget's networks


@dataclass(frozen=True)
class Measure:
    """One proxy column to correlate: its proxy name, minibatch count k (0 for controls, which
    need no training) and the column holding its values."""

    proxy: str
    k: int
    column: str
    higher_is_better: bool


def correlate(
    frame: pd.DataFrame, measures: list[Measure], budget, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES
) -> list[dict]:
    """Rows of the correlation table for one group of networks: `frame` has a `test_error` column
    and one column per measure (params and macs among them: the partial correlations need them)."""
    n = len(frame)
    error = frame["test_error"].to_numpy(float)
    index = rng.integers(0, n, (resamples, n)) if n >= 3 else np.zeros((0, n), dtype=int)

    # The point estimate is the statistic on the networks as they are, the interval its bootstrap.
    def both(fn: Callable, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        point = fn(x[None], y[None])[0] if n >= 3 else float("nan")
        return point, fn(x[index], y[index]) if len(index) else np.empty(0)

    tau_error = {}  # column -> (point, resamples) of kendall tau with error
    for m in measures:
        tau_error[m.column] = both(kendall_tau_b, frame[m.column].to_numpy(float), error)
    cost_tau = {}  # (column, control) -> tau of the measure with a control
    for m in measures:
        for control in ("params", "macs"):
            cost_tau[m.column, control] = both(
                kendall_tau_b, frame[m.column].to_numpy(float), frame[control].to_numpy(float)
            )
    rows = []
    for m in measures:
        x = frame[m.column].to_numpy(float)
        sign = -1.0 if m.higher_is_better else 1.0
        rho, rho_boot = both(spearman_rho, x, error)
        tau, tau_boot = tau_error[m.column]
        row = {
            "budget": budget,
            "proxy": m.proxy,
            "minibatches": m.k,
            "n": n,
            "spearman": rho,
            "spearman_low": interval(rho_boot)[0],
            "spearman_high": interval(rho_boot)[1],
            "kendall": tau,
            "kendall_low": interval(tau_boot)[0],
            "kendall_high": interval(tau_boot)[1],
        }
        quality_boot = sign * tau_boot
        low, high = interval(quality_boot)
        row.update({"quality": sign * tau, "quality_low": low, "quality_high": high})
        for control in ("params", "macs"):
            t_zy, t_zy_boot = tau_error[control]
            t_xz, t_xz_boot = cost_tau[m.column, control]
            point = partial_tau(np.array(tau), np.array(t_xz), np.array(t_zy)) if m.proxy != control else np.nan
            boot = partial_tau(tau_boot, t_xz_boot, t_zy_boot) if m.proxy != control else np.empty(0)
            low, high = interval(boot)
            row.update(
                {f"partial_{control}": float(point), f"partial_{control}_low": low, f"partial_{control}_high": high}
            )
        rows.append(row)
    # Whether each proxy's quality interval lies wholly above the params control's (a conservative
    # test: non-overlapping intervals), and the paired bootstrap interval of the difference.
    params_boot = -tau_error["params"][1]  # params is higher-is-better: quality = -tau
    params_high = interval(params_boot)[1]
    for m, row in zip(measures, rows):
        sign = -1.0 if m.higher_is_better else 1.0
        difference = sign * tau_error[m.column][1] - params_boot
        row["above_params"] = bool(row["quality_low"] > params_high) if np.isfinite(params_high) else False
        row["minus_params_low"], row["minus_params_high"] = interval(difference)
    return rows


def stability(scorings: list[pd.DataFrame], measures: list[Measure], budget) -> list[dict]:
    """Per measure: Kendall tau between the candidates' values under every pair of scoring seeds
    (mean, min, max over the pairs) and the share of pairs whose top-1 candidate (best under the
    measure's sign) is the same. Each scoring lists the same candidates."""
    rows = []
    for m in measures:
        values = [s.set_index("candidate")[m.column].sort_index().to_numpy(float) for s in scorings]
        pairs = list(combinations(range(len(values)), 2))
        taus = np.array([kendall_tau_b(values[i][None], values[j][None])[0] for i, j in pairs])
        best = [int(np.argmax(v if m.higher_is_better else -v)) for v in values]
        same = [best[i] == best[j] for i, j in pairs]
        finite = taus[np.isfinite(taus)]
        rows.append(
            {
                "budget": budget,
                "proxy": m.proxy,
                "minibatches": m.k,
                "candidates": len(values[0]),
                "seeds": len(values),
                "pairs": len(pairs),
                "tau_mean": float(finite.mean()) if finite.size else float("nan"),
                "tau_min": float(finite.min()) if finite.size else float("nan"),
                "tau_max": float(finite.max()) if finite.size else float("nan"),
                "top1_same": float(np.mean(same)) if same else float("nan"),
            }
        )
    return rows


def ranked(table: pd.DataFrame, budget=POOLED, k: int = 1, exclude: set | None = None) -> list[str]:
    """Proxies at k minibatches ordered by their quality in `budget`'s rows, best first."""
    rows = table[(table["budget"].astype(str) == str(budget)) & (table["minibatches"] == k)]
    rows = rows[~rows["proxy"].isin(exclude or set())].sort_values("quality", ascending=False, na_position="last")
    return rows["proxy"].tolist()
