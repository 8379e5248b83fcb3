"""The shoot-out's statistics: vectorised rank correlations against scipy.stats, partial tau,
sign-corrected quality, paired bootstrap intervals and rank stability."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr

from blockswap.reporting.correlation import Measure, correlate, ranked, stability
from blockswap.stats.intervals import interval
from blockswap.stats.ranks import kendall_tau_b, partial_tau, spearman_rho

# Rows of values with many ties (small integers) and of distinct floats.
rows = st.integers(3, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n), st.lists(st.floats(-5, 5), min_size=n, max_size=n)
    )
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows)
def test_vectorised_correlations_equal_scipy(pair):
    x, y = (np.array(v, dtype=float) for v in pair)
    tau, rho = kendall_tau_b(x[None], y[None])[0], spearman_rho(x[None], y[None])[0]
    if len(set(x)) < 2 or len(set(y)) < 2:
        assert np.isnan(tau) and np.isnan(rho)
    else:
        assert tau == pytest.approx(kendalltau(x, y)[0], abs=1e-12)  # tau-b, as scipy
        assert rho == pytest.approx(spearmanr(x, y)[0], abs=1e-12)


def test_kendall_chunks_give_the_same_rows(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 20)), rng.normal(size=(50, 20))
    whole = kendall_tau_b(x, y)
    monkeypatch.setattr("blockswap.stats.ranks.CHUNK_CELLS", 400)  # one row per chunk
    np.testing.assert_array_equal(kendall_tau_b(x, y), whole)
    assert whole[7] == pytest.approx(kendalltau(x[7], y[7])[0])


def test_partial_tau_formula_and_its_use():
    # Kendall's formula on hand-picked taus: (0.5 - 0.6 * 0.4) / sqrt(0.64 * 0.84).
    assert partial_tau(np.array(0.5), np.array(0.6), np.array(0.4)) == pytest.approx(0.26 / np.sqrt(0.64 * 0.84))
    # x independent of z: the partial is the plain tau scaled by the part of y that z leaves.
    assert partial_tau(np.array(0.3), np.array(0.0), np.array(0.9)) == pytest.approx(0.3 / np.sqrt(1 - 0.81))
    # The table's partial column is that formula on scipy's three taus, for params and for MACs.
    frame = frame_of(seed=4)
    row = correlate(frame, MEASURES, 1, np.random.default_rng(0), resamples=10)[0]
    for control in ("params", "macs"):
        t_xy, t_xz, t_yz = (
            kendalltau(frame[a], frame[b])[0]
            for a, b in (("good", "test_error"), ("good", control), (control, "test_error"))
        )
        assert row[f"partial_{control}"] == pytest.approx((t_xy - t_xz * t_yz) / np.sqrt((1 - t_xz**2) * (1 - t_yz**2)))


def frame_of(n=24, seed=0):
    rng = np.random.default_rng(seed)
    error = rng.normal(10, 1, n)
    return pd.DataFrame(
        {
            "test_error": error,
            "good": -error + rng.normal(0, 0.05, n),  # higher predicts lower error, almost perfectly
            "backwards": error,  # declared higher-is-better but it grows with error
            "lower": error + rng.normal(0, 0.05, n),  # lower-is-better and right
            "params": rng.permutation(n) * 100 + 50_000,  # unrelated to error here
            "macs": rng.permutation(n) * 1000 + 900_000,
        }
    )


MEASURES = [
    Measure("good", 1, "good", True),
    Measure("backwards", 1, "backwards", True),
    Measure("lower", 1, "lower", False),
    Measure("params", 0, "params", True),
    Measure("macs", 0, "macs", True),
]


def test_quality_is_signed_by_the_registry_never_absolute():
    rows = {r["proxy"]: r for r in correlate(frame_of(), MEASURES, 100, np.random.default_rng(0))}
    assert rows["good"]["kendall"] < -0.9 and rows["good"]["quality"] > 0.9
    assert rows["lower"]["kendall"] > 0.9 and rows["lower"]["quality"] > 0.9
    # A proxy whose declared sign is wrong gets a negative quality, not an absolute value.
    assert rows["backwards"]["quality"] == pytest.approx(-1)
    assert rows["good"]["above_params"] and not rows["backwards"]["above_params"]
    assert rows["good"]["minus_params_low"] > 0 and rows["backwards"]["minus_params_high"] < 0
    assert rows["good"]["quality_low"] <= rows["good"]["quality"] <= rows["good"]["quality_high"]
    assert all(r["n"] == 24 for r in rows.values())
    assert np.isnan(rows["params"]["partial_params"])  # a control given itself is undefined


def test_partial_tau_given_params_when_params_explains_the_proxy():
    # The proxy is params plus a little noise and error follows params: given params, little is left.
    rng = np.random.default_rng(3)
    params = rng.permutation(30) * 100.0 + 50_000
    error = -params / 1000 + rng.normal(0, 0.3, 30)
    frame = pd.DataFrame(
        {"test_error": error, "proxy": params + rng.normal(0, 300, 30), "params": params, "macs": params * 3}
    )
    measures = [
        Measure("proxy", 1, "proxy", True),
        Measure("params", 0, "params", True),
        Measure("macs", 0, "macs", True),
    ]
    row = correlate(frame, measures, 1, np.random.default_rng(0))[0]
    assert row["quality"] > 0.6 and abs(row["partial_params"]) < 0.3 < row["quality"] - abs(row["partial_params"])


def test_bootstrap_is_seeded_and_paired():
    a = correlate(frame_of(), MEASURES, 1, np.random.default_rng(5), resamples=200)
    b = correlate(frame_of(), MEASURES, 1, np.random.default_rng(5), resamples=200)
    pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
    c = correlate(frame_of(), MEASURES, 1, np.random.default_rng(6), resamples=200)
    assert pd.DataFrame(a)["quality_low"].tolist() != pd.DataFrame(c)["quality_low"].tolist()
    assert np.isnan(interval(np.array([np.nan, np.nan]))).all()
    assert interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_small_groups_give_no_interval():
    row = correlate(frame_of(n=2), MEASURES, 1, np.random.default_rng(0))[0]
    assert row["n"] == 2 and np.isnan(row["kendall"]) and np.isnan(row["quality_low"])


def test_rank_stability_counts_pairs_and_top1():
    base = pd.DataFrame({"candidate": range(6), "p@1": [1.0, 2, 3, 4, 5, 6]})
    same = base.copy()
    swapped = base.assign(**{"p@1": [1.0, 2, 3, 4, 6, 5]})  # top-1 changes, one discordant pair
    row = stability([base, same, swapped], [Measure("p", 1, "p@1", True)], 100)[0]
    assert row["seeds"] == 3 and row["pairs"] == 3
    assert row["top1_same"] == pytest.approx(1 / 3)  # only (base, same) agree on the best
    assert row["tau_max"] == pytest.approx(1) and row["tau_min"] == pytest.approx(
        kendalltau(base["p@1"], swapped["p@1"])[0]
    )
    lower = stability([base, swapped], [Measure("p", 1, "p@1", False)], 100)[0]
    assert lower["top1_same"] == 1.0  # lower-is-better: the best is candidate 0 in both


def test_ranked_orders_by_quality():
    table = pd.DataFrame(
        {"budget": ["pooled"] * 3, "proxy": ["a", "b", "c"], "minibatches": [1, 1, 1], "quality": [0.1, np.nan, 0.5]}
    )
    assert ranked(table) == ["c", "a", "b"] and ranked(table, exclude={"c"}) == ["a", "b"]
