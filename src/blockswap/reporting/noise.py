"""How far trained error can be trusted as the shoot-out's target: the seed-to-seed noise ceiling
of the random students and the power of a shoot-out of n networks (whether each run converged is
in results/convergence.py).

Every random student is trained under k >= 2 student seeds (same teacher); its target is the mean
error over those seeds. If two trainings of the same network disagree on the ranking, no score
computed before training can agree with either of them better than they agree with each other.

Noise ceiling (per budget, and pooled over budgets), from the n x k matrix of errors x_ij of
network i under seed j (every network under the same seeds):
- seed-to-seed Kendall tau-b and Spearman rho: between the n errors of seed a and of seed b,
  averaged over the k(k-1)/2 pairs of seeds; the 95 % percentile bootstrap interval resamples
  networks (rows of the matrix) with replacement (`BOOTSTRAP_RESAMPLES`, seed `BOOTSTRAP_SEED`).
- two-way ANOVA, networks x seeds, without interaction: the students of one seed share their
  minibatches (common random numbers), so a seed can make every network a little better or worse
  at once; such a shift changes no ranking and is taken out. MSB = k sum_i (m_i - m)^2 / (n - 1)
  of the networks' seed means m_i, MSE = sum_ij (x_ij - m_i - c_j + m)^2 / ((n - 1)(k - 1)) with the
  seeds' means c_j. The consistency ICC(C,1) = (MSB - MSE) / (MSB + (k - 1) MSE) is the share of
  one run's error variance (seed shift removed) that is the network's; ICC(C,k) = (MSB - MSE) /
  MSB, the reliability of the k-seed mean (Spearman-Brown: k ICC(C,1) / (1 + (k - 1) ICC(C,1))).
  `within_sd` = sqrt(MSE), the spread of one network's error over seeds beyond the shared shift;
  `between_sd` = the standard deviation of the seed means over networks, sqrt(MSB / k);
  `seed_shift_sd` = the standard deviation of the seeds' mean errors c_j (the shared part).
- ceiling for the seed-mean target: model x_ij = q_i + e_ij with the networks' true quality q_i
  and seed noise e_ij independent, Gaussian, the noise of the same variance for every network.
  The correlation of q with the k-seed mean is sqrt(ICC(C,k)), and for Gaussian pairs Kendall's
  tau = (2 / pi) arcsin(r) (Greiner's relation), so the largest tau any predictor independent of
  the seed noise can reach with the seed-mean error, even q itself, is
  (2 / pi) arcsin(sqrt(max(ICC(C,k), 0))). A proxy can exceed it only by chance. Where the seed
  means do not vary at all (MSB = 0) ICC(C,k) is left empty and the ceiling is 0. Under the same
  model the seed-to-seed tau is about (2 / pi) arcsin(ICC(C,1)): the two estimates check each other.
  The pooled group's ICC includes the differences between budgets (larger budgets, lower error):
  it is the ceiling of the pooled correlation rows, which correlate across budgets too.

Power (normal approximation; null variance of tau without ties 2(2n + 5) / (9 n (n - 1))):
- `min_observed_tau`: the smallest |tau| a two-sided 5 % test detects with 80 % power,
  (z_0.975 + z_0.8) SE0(n) = (1.96 + 0.8416) SE0(n). It uses the null SE for the alternative
  too, which slightly overstates the SE there (conservative).
- `min_true_tau`: the same divided by the seed-mean ceiling. A proxy whose tau with the true
  quality q is t shows about t x ceiling with the noisy target (attenuation; exact at t = 0 and
  t = 1 under the model above, linear in between). Above 1: no true tau is detectable. Empty
  when the ceiling is <= 0.
- `n_needed`: the smallest number of networks with (1.96 + 0.8416) SE0(n) <= `target_tau` x
  ceiling (target_tau = 0.3) at the present k seeds. Empty when the ceiling is <= 0: no number of
  networks is enough (the Markdown says "never").
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..stats.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, interval
from ..stats.ranks import kendall_tau_b, spearman_rho
from .correlation import POOLED

Z_TEST = 1.959963984540054  # two-sided 5 %: the normal's 97.5 % quantile
Z_POWER = 0.8416212335729143  # 80 % power: the normal's 80 % quantile
TARGET_TAU = 0.3  # the true tau n_needed is sized to tell from 0
MAX_NETWORKS = 2**53  # beyond this n_needed is left empty, as for "never"
NOISE_COLUMNS = ["method", "network", "budget", "seed", "test_error"]


# --- the seed matrix ---------------------------------------------------------------------------


def random_students(students: pd.DataFrame) -> pd.DataFrame:
    """The random students of a students table, checked to have what the noise statistics need."""
    missing = [c for c in NOISE_COLUMNS if c not in students]
    if missing:
        raise BlockswapError(f"the students table has no {missing[0]} column (blockswap report students)")
    random = students[students["method"] == "random"]
    if random.empty:
        raise BlockswapError("the students table has no random students (set ablation.random_students)")
    if random["budget"].isna().any():
        network = random.loc[random["budget"].isna(), "network"].iloc[0]
        raise BlockswapError(f"random student {network} has no budget in the students table")
    return random.assign(budget=random["budget"].astype(int))


def seeded(random: pd.DataFrame) -> bool:
    """Whether any network of `random` was trained under two or more seeds."""
    return bool(len(random)) and random.groupby("network")["seed"].nunique().max() >= 2


def seed_matrix(random: pd.DataFrame, group) -> pd.DataFrame:
    """Test error of each network (rows) under each seed (columns), checked: one row per (network,
    seed), two or more seeds for every network and the same seeds for all, since seed-to-seed
    agreement compares the networks' errors under one seed with those under another."""
    where = "pooled over budgets" if group == POOLED else f"of budget {group}"
    twice = random[random.duplicated(["network", "seed"])]
    if len(twice):
        raise BlockswapError(
            f"random student {twice['network'].iloc[0]} has two rows of seed {twice['seed'].iloc[0]} "
            "in the students table"
        )
    matrix = random.pivot(index="network", columns="seed", values="test_error").sort_index()
    counts = matrix.notna().sum(axis=1)
    if (counts < 2).any():
        network = counts.index[counts < 2][0]
        raise BlockswapError(
            f"random student {network} {where} was trained under one seed: the noise ceiling needs "
            "two or more student seeds of every network"
        )
    if matrix.isna().any().any():
        network = matrix.index[matrix.isna().any(axis=1)][0]
        seed = matrix.columns[matrix.loc[network].isna()][0]
        raise BlockswapError(
            f"random student {network} {where} has no run of seed {seed}, which other networks have: "
            "every network needs the same student seeds"
        )
    return matrix


# --- statistics --------------------------------------------------------------------------------


def anova(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MSB (between networks) and MSE (residual, each seed's shared shift removed) of the two-way
    ANOVA without interaction of errors (..., n networks, k seeds)."""
    n, k = errors.shape[-2:]
    means = errors.mean(-1)
    seeds = errors.mean(-2)
    grand = means.mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):  # one network: no spread between networks
        msb = k * ((means - grand[..., None]) ** 2).sum(-1) / (n - 1)
        residual = errors - means[..., :, None] - seeds[..., None, :] + grand[..., None, None]
        msw = (residual**2).sum((-2, -1)) / ((n - 1) * (k - 1))
    return msb, msw


def icc(msb, msw, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ICC(C,1) and ICC(C,k) from the mean squares: ICC(C,k) is NaN where the seed means do not
    vary (MSB = 0, where it would be minus infinity), ICC(C,1) only where no error varies."""
    msb, msw = np.asarray(msb, float), np.asarray(msw, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        single = np.where(msb + (k - 1) * msw > 0, (msb - msw) / (msb + (k - 1) * msw), np.nan)
        mean = np.where(msb > 0, (msb - msw) / msb, np.nan)
    return single, mean


def kendall_ceiling(msb, msw) -> np.ndarray:
    """The largest Kendall tau with the seed-mean error under the Gaussian model:
    (2 / pi) arcsin(sqrt(ICC(C,k))), ICC clipped at 0; 0 where the seed means do not vary, NaN
    where no error varies at all."""
    msb, msw = np.asarray(msb, float), np.asarray(msw, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        reliability = np.clip(np.where(msb > 0, 1 - msw / msb, 0.0), 0, 1)
    defined = np.isfinite(msb) & ((msb > 0) | (msw > 0))
    return np.where(defined, 2 / np.pi * np.arcsin(np.sqrt(reliability)), np.nan)


def null_se(n: int) -> float:
    """Standard error of Kendall's tau of n independent pairs without ties (NaN below two)."""
    return float(np.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))) if n >= 2 else float("nan")


def min_observed_tau(n: int) -> float:
    """The smallest |tau| a two-sided 5 % test detects with 80 % power among n networks."""
    return (Z_TEST + Z_POWER) * null_se(n)


def min_true_tau(n: int, ceiling: float) -> float:
    """min_observed_tau, attenuated by the seed-mean ceiling: NaN where the ceiling is <= 0."""
    return min_observed_tau(n) / ceiling if ceiling > 0 else float("nan")  # NaN > 0 is False too


def networks_needed(ceiling: float, tau: float = TARGET_TAU) -> int | None:
    """The fewest networks whose shoot-out detects a true tau of `tau` (5 % two-sided, 80 %
    power) under the seed-mean ceiling; None when none suffice (ceiling <= 0 or NaN)."""
    if not ceiling > 0:
        return None
    target = tau * ceiling
    low, high = 2, 3  # min_observed_tau falls with n: double, then bisect
    while min_observed_tau(high) > target:
        low, high = high, high * 2
        if high > MAX_NETWORKS:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if min_observed_tau(middle) > target else (low, middle)
    return high


def _pair_mean(fn, errors: np.ndarray, pairs) -> np.ndarray:
    """fn (a vectorised correlation) between every pair of seed columns, averaged over the pairs
    where it is defined: errors (B, n, k) -> (B,)."""
    values = np.stack([fn(errors[..., a], errors[..., b]) for a, b in pairs])
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite.any(0), np.where(finite, values, 0).sum(0) / finite.sum(0), np.nan)


def seed_noise(matrix: pd.DataFrame, group, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """One row of the ceiling table for the networks x seeds error matrix of a group. Each group
    draws its resamples from its own generator seeded with BOOTSTRAP_SEED, so a budget's numbers
    do not depend on which other budgets are in the table."""
    errors = matrix.to_numpy(float)
    n, k = errors.shape
    pairs = list(combinations(range(k), 2))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    index = rng.integers(0, n, (resamples, n)) if n >= 3 else np.zeros((0, n), dtype=int)
    row = {"budget": group, "n": n, "seeds": k, "pairs": len(pairs)}
    for name, fn in (("seed_tau", kendall_tau_b), ("seed_rho", spearman_rho)):
        point = _pair_mean(fn, errors[None], pairs)[0] if n >= 3 else np.nan
        low, high = interval(_pair_mean(fn, errors[index], pairs)) if len(index) else (np.nan, np.nan)
        row.update({name: float(point), f"{name}_low": low, f"{name}_high": high})
    msb, msw = anova(errors)
    single, mean = icc(msb, msw, k)
    ceiling = float(kendall_ceiling(msb, msw))
    boot = kendall_ceiling(*anova(errors[index])) if len(index) else np.empty(0)
    needed = networks_needed(ceiling)
    row.update(
        {
            "icc_c_1": float(single),
            "icc_c_k": float(mean),
            "within_sd": float(np.sqrt(msw)),
            "between_sd": float(np.sqrt(msb / k)),
            "seed_shift_sd": float(errors.mean(0).std(ddof=1)),
            "ceiling_tau": ceiling,
            "ceiling_tau_low": interval(boot)[0],
            "ceiling_tau_high": interval(boot)[1],
            "min_observed_tau": min_observed_tau(n),
            "min_true_tau": min_true_tau(n, ceiling),
            "target_tau": TARGET_TAU,
            "n_needed": needed,
        }
    )
    return row


# --- the tables --------------------------------------------------------------------------------


def group_ceilings(random: pd.DataFrame, budgets, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Budget (and POOLED, with more than one budget) -> ceiling row of the random students of
    those budgets, or None where every network has one seed (the paper trains one per random
    student: no ceiling, nothing to check). A group of fewer than three networks gets no
    seed-to-seed tau or interval, as its correlation rows get none."""
    random = random[random["budget"].isin(budgets)]
    if not seeded(random):
        return dict.fromkeys([*budgets, *([POOLED] if len(budgets) > 1 else [])])
    groups = {b: random[random["budget"] == b] for b in budgets}
    if len(budgets) > 1:
        groups[POOLED] = random
    return {label: seed_noise(seed_matrix(rows, label), label, resamples) for label, rows in groups.items()}


def ceiling_table(students: pd.DataFrame, resamples: int = BOOTSTRAP_RESAMPLES) -> pd.DataFrame:
    """The noise ceiling of the random students per budget and pooled over budgets (the module
    docstring): every network needs two or more seeds and every budget three or more networks."""
    random = random_students(students)
    budgets = sorted(random["budget"].unique())
    for budget in budgets:
        networks = random.loc[random["budget"] == budget, "network"].nunique()
        if networks < 3:
            raise BlockswapError(
                f"budget {budget} has {networks} random student{'s' if networks != 1 else ''}: "
                "the noise ceiling needs three or more networks"
            )
    if not seeded(random):  # one seed everywhere: the error names a network of the first budget
        seed_matrix(random[random["budget"] == budgets[0]], budgets[0])
    table = pd.DataFrame(list(group_ceilings(random, budgets, resamples).values()))
    table["n_needed"] = table["n_needed"].astype("Int64")
    return table


def _interval_text(value, low, high, digits: int = 3) -> str:
    if pd.isna(value):
        return ""
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]" if pd.notna(low) else f"{value:+.{digits}f}"


def _never(value, ceiling, shown: str) -> str:
    """A power number as text: "never" where the ceiling is <= 0, empty where it is unknown."""
    if pd.notna(value):
        return shown
    return "never (ceiling 0)" if pd.notna(ceiling) and ceiling <= 0 else ""


def _true_tau_text(value) -> str:
    return f"{value:.2f}" + (" (none: above 1)" if value > 1 else "")


def ceiling_display(table: pd.DataFrame) -> pd.DataFrame:
    """The ceiling table for reading: each tau with its interval, the power numbers in words where
    no number of networks is enough."""
    number = lambda v: "" if pd.isna(v) else f"{v:.3f}"  # noqa: E731
    return pd.DataFrame(
        {
            "budget": table["budget"],
            "n": table["n"],
            "seeds": table["seeds"],
            "seed-to-seed tau": [
                _interval_text(*v) for v in zip(table["seed_tau"], table["seed_tau_low"], table["seed_tau_high"])
            ],
            "seed-to-seed rho": [
                _interval_text(*v) for v in zip(table["seed_rho"], table["seed_rho_low"], table["seed_rho_high"])
            ],
            "ICC(C,1)": table["icc_c_1"].map(number),
            "ICC(C,k)": table["icc_c_k"].map(number),
            "within SD (pt)": table["within_sd"].map(number),
            "between SD (pt)": table["between_sd"].map(number),
            "seed shift SD (pt)": table["seed_shift_sd"].map(number),
            "ceiling tau (seed mean)": [
                _interval_text(*v)
                for v in zip(table["ceiling_tau"], table["ceiling_tau_low"], table["ceiling_tau_high"])
            ],
            "min observed tau (5 %, 80 % power)": table["min_observed_tau"].map(lambda v: f"{v:.2f}"),
            "min true tau": [
                _never(v, c, _true_tau_text(v) if pd.notna(v) else "")
                for v, c in zip(table["min_true_tau"], table["ceiling_tau"])
            ],
            f"n for true tau {TARGET_TAU:g}": [
                _never(v, c, f"{int(v)}" if pd.notna(v) else "")
                for v, c in zip(table["n_needed"], table["ceiling_tau"])
            ],
        }
    )
