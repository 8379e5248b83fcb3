"""Budgeted candidate sampling: the band, the candidate set, seeding, uniform proposals, impossible
budgets."""

import itertools
import math
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, chisquare

from blockswap import CANDIDATE_SETS, BlockswapError, Genotype, NetworkSpec, parse_arch
from blockswap.cli import main
from blockswap.search.sampling import (
    CostTable,
    cost_of,
    count_in_band,
    sample_candidates,
)

CIFAR = (32, 32)


@pytest.fixture(scope="module")
def wrn402_paper():
    return CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], CIFAR, 10)


@pytest.mark.parametrize("budget", [811_400, 404_200, 217_000])
def test_every_candidate_is_strictly_inside_the_band_and_distinct(wrn402_paper, budget):
    frame = sample_candidates(wrn402_paper, budget, 300, seed=1)
    assert len(frame) == 300 and frame["genotype"].is_unique
    assert list(frame["candidate"]) == list(range(300))
    assert ((frame["params"] - budget).abs() < 0.025 * budget).all()
    paper_names = {t.name for t in CANDIDATE_SETS["paper"]}
    for genotype in frame["genotype"].head(50):
        assert set(genotype.split()) <= paper_names and len(genotype.split()) == 18


def test_table_costs_equal_the_network_spec(wrn402_paper):
    frame = sample_candidates(wrn402_paper, 404_200, 20, seed=2)
    for row in frame.itertuples():
        cost = NetworkSpec.create("wrn-40-2", row.genotype).cost(CIFAR)
        assert (row.params, row.macs, row.ops) == (cost.params, cost.macs, cost.ops)
        assert cost_of(wrn402_paper, Genotype.parse(row.genotype)) == cost


def test_same_seed_same_candidates_other_seed_others(wrn402_paper):
    a = sample_candidates(wrn402_paper, 556_000, 100, seed=7)
    b = sample_candidates(wrn402_paper, 556_000, 100, seed=7)
    c = sample_candidates(wrn402_paper, 556_000, 100, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["genotype"]) != set(c["genotype"])


def test_draws_are_uniform_over_the_types_valid_at_each_block():
    # WRN-16-1's first stage has 16 channels, where BG(2,16) and BG(2,M/16) do not fit.
    table = CostTable.build(parse_arch("wrn-16-1"), CANDIDATE_SETS["paper"], CIFAR, 10)
    assert [len(t) for t in table.types] == [19, 19, 21, 21, 21, 21]
    frame = sample_candidates(table, 100_000, 2000, seed=0, tolerance=0.9)
    first = frame["genotype"].str.split().str[0]
    assert "BG(2,16)" not in set(first) and len(set(first)) == 19


def type_indices(table, frame):
    """(samples, slots) index of each sampled block's type among the types valid at its slot."""
    names = [{t.name: i for i, t in enumerate(types)} for types in table.types]
    return np.array([[names[s][n] for s, n in enumerate(g.split())] for g in frame["genotype"]])


def uniformity_pvalues(table, frame):
    """Chi-square p-values: per slot, counts of each valid type against a uniform law; per pair of
    adjacent slots, their joint counts against independence."""
    chosen = type_indices(table, frame)
    per_slot = [chisquare(np.bincount(chosen[:, s], minlength=len(t))).pvalue for s, t in enumerate(table.types)]
    pairs = []
    for s in range(len(table.types) - 1):
        joint = np.zeros((len(table.types[s]), len(table.types[s + 1])))
        np.add.at(joint, (chosen[:, s], chosen[:, s + 1]), 1)
        joint = joint[joint.sum(1) > 0][:, joint.sum(0) > 0]  # a type never drawn fails per_slot
        pairs.append(chi2_contingency(joint).pvalue)
    return per_slot, pairs


# Budgets whose band (tolerance 0.9) contains every network of the space, so that every proposal
# is kept and the sampled genotypes are the proposals themselves (distinctness aside: the spaces
# hold 7e7 and 6e23 networks, so a handful of repeats at most are dropped).
EVERYTHING_KEPT = [("wrn-16-1", 100_000, 19_000), ("wrn-40-2", 1_300_000, 21_000)]


@pytest.mark.slow
@pytest.mark.parametrize("arch,budget,samples", EVERYTHING_KEPT)
def test_proposals_are_uniform_per_block_and_independent_across_blocks(arch, budget, samples):
    table = CostTable.build(parse_arch(arch), CANDIDATE_SETS["paper"], CIFAR, 10)
    cheapest, dearest = table.achievable("params")
    assert budget * 0.1 < cheapest and dearest < budget * 1.9  # the band holds every network
    frame = sample_candidates(table, budget, samples, seed=0, tolerance=0.9)
    assert len(frame) == samples
    per_slot, pairs = uniformity_pvalues(table, frame)
    # ~1000 draws per type: a sampler that never draws one type of one slot, or draws one twice as
    # often, gives p < 1e-100 there; a uniform one is above 1e-4 at every slot (fixed seed).
    assert min(per_slot) > 1e-4, per_slot
    assert min(pairs) > 1e-4, pairs


def test_macs_budget(wrn402_paper):
    frame = sample_candidates(wrn402_paper, 60e6, 50, seed=0, budget_kind="macs")
    assert ((frame["macs"] - 60e6).abs() < 0.025 * 60e6).all()


@pytest.mark.parametrize("budget", [100_000, 3_000_000])
def test_budget_outside_the_reachable_range_fails_at_once(wrn402_paper, budget):
    with pytest.raises(
        BlockswapError, match="outside what wrn-40-2 can reach with these candidates: 146538 to 2243546 params"
    ):
        sample_candidates(wrn402_paper, budget, 10, seed=0)


def test_unfillable_budget_fails_with_a_count_and_a_hint(monkeypatch, wrn402_paper):
    import blockswap.search.sampling as sampling

    monkeypatch.setattr(sampling, "MAX_DRAWS_PER_SAMPLE", 20)
    with pytest.raises(BlockswapError, match=r"found only \d+ distinct candidates .* after \d+ draws; ask for fewer"):
        sample_candidates(wrn402_paper, 2_200_000, 1000, seed=0)


def band_probability(table, budget, tolerance=0.025):
    """Exact probability that one uniform proposal has params strictly inside the band: the law of
    the total, convolved slot by slot over the per-slot cost table (truncated above the band)."""
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)
    top = int(np.ceil(high))
    law = np.zeros(top + 1)
    law[int(table.fixed[0])] = 1.0
    for costs in table.costs:
        step = np.zeros_like(law)
        for value in costs[:, 0]:
            if value <= top:
                step[value:] += law[: top + 1 - value]
        law = step / len(costs)
    total = np.arange(top + 1)
    return float(law[(total > low) & (total < high)].sum())


@pytest.mark.slow
def test_released_set_reaches_the_162k_network_the_paper_set_barely_does(monkeypatch):
    import blockswap.search.sampling as sampling

    released = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["released"], CIFAR, 10)
    paper = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], CIFAR, 10)
    frame = sample_candidates(released, 162_200, 200, seed=0)
    assert len(frame) == 200
    # Exactly: a uniform proposal lands in the 162.2K band with probability 3.0e-4 from the released
    # set and 3.4e-7 from the paper set (about 7 hits per 20M draws; the README's seed-0 run of
    # 20M draws found 13 distinct networks).
    p_released, p_paper = band_probability(released, 162_200), band_probability(paper, 162_200)
    assert p_released == pytest.approx(3.0067e-4, rel=1e-3)
    assert p_paper == pytest.approx(3.3903e-7, rel=1e-3)
    # The convolution agrees with plain Monte Carlo through the sampler's own cost table.
    rng = np.random.default_rng(0)
    draws = 400_000
    choices = rng.integers(0, [len(t) for t in released.types], size=(draws, len(released.types)))
    params = released.totals(choices)[:, 0]
    hits = int(((params > 162_200 * 0.975) & (params < 162_200 * 1.025)).sum())
    expected = p_released * draws  # ~120; Poisson sd ~11
    assert abs(hits - expected) < 5 * expected**0.5, (hits, expected)
    # The sampler itself: with the same bound of 1M proposals the released set fills 200 candidates
    # and the paper set finds almost none (0.34 expected).
    monkeypatch.setattr(sampling, "MAX_DRAWS_PER_SAMPLE", 5_000)
    assert len(sample_candidates(released, 162_200, 200, seed=0)) == 200
    with pytest.raises(BlockswapError, match=r"found only \d+ distinct candidates .* after 1000000 draws") as failure:
        sample_candidates(paper, 162_200, 200, seed=0)
    assert int(re.search(r"found only (\d+)", str(failure.value))[1]) <= 3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--budget", "1e5"], "outside what wrn-40-2 can reach"),
        (["--budget", "nan"], "budget must be a positive finite number, got nan"),
        (["--budget", "4e5", "--tolerance", "2"], "tolerance must be a fraction"),
        (["--budget", "4e5", "--samples", "0"], "samples must be at least 1"),
        (["--budget", "4e5", "--candidates", "mine"], "invalid choice: 'mine'"),
        (["--budget", "4e5", "--budget-kind", "flops"], "invalid choice: 'flops'"),
    ],
)
def test_cli_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "c.csv"
    code = main(["sample", "--arch", "wrn-40-2", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_cli_output_is_byte_identical_for_a_seed(tmp_path):
    def run(name):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "blockswap.cli",
                "sample",
                "--arch",
                "wrn-40-2",
                "--budget",
                "404200",
                "--samples",
                "200",
                "--seed",
                "3",
                "--out",
                str(tmp_path / name),
            ],
            check=True,
            capture_output=True,
        )
        return (tmp_path / name).read_bytes()

    assert run("a.csv") == run("b.csv")
    header = (tmp_path / "a.csv").read_text().splitlines()[0]
    assert header == "candidate,genotype,params,macs,ops"
    assert (tmp_path / "a.csv.provenance.json").is_file()


# --- counting the networks in a band exactly ------------------------------------------------------------


def brute_force_count(table, budget, kind, tolerance):
    """Every genotype of the space enumerated, its cost through the table, kept strictly in the band."""
    choices = np.array(list(itertools.product(*(range(len(t)) for t in table.types))))
    cost = table.totals(choices)[:, table.column(kind)]
    return int(((cost > budget * (1 - tolerance)) & (cost < budget * (1 + tolerance))).sum())


def reference_count(table, budget, kind, tolerance):
    """The plain dynamic programme over slots with Python integers (a dict cost -> count)."""
    k, low, high = table.column(kind), budget * (1 - tolerance), budget * (1 + tolerance)
    ways = {int(table.fixed[k]): 1}
    for costs in table.costs:
        after = {}
        for total, n in ways.items():
            for cost in costs[:, k].tolist():
                if total + cost < high:
                    after[total + cost] = after.get(total + cost, 0) + n
        ways = after
    return sum(n for total, n in ways.items() if total > low)


@pytest.fixture(scope="module", params=["paper", "released"])
def wrn101(request):
    return CostTable.build(parse_arch("wrn-10-1"), CANDIDATE_SETS[request.param], (8, 8), 10)


# Budgets across and beyond wrn-10-1's range (8,650 to 78,426 params, 105K to 815K MACs at 8 px).
PARAMS_BUDGETS = (5_000, 9_000, 30_000, 45_000, 50_000, 60_000, 77_850, 90_000)
BAND_CASES = [("params", b, tol) for b in PARAMS_BUDGETS for tol in (0.025, 0.1, 0.5)]
BAND_CASES += [("macs", b, tol) for b in (110_000, 300_000, 500_000, 800_000) for tol in (0.025, 0.1)]


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_count_in_band_equals_brute_force_enumeration(monkeypatch, wrn101, path):
    """wrn-10-1 has 3 blocks: all ~8,400 genotypes enumerated. Both programmes (the dense table and
    the sparse one for wide cost ranges) count exactly what enumeration finds."""
    import blockswap.search.sampling as sampling

    if path == "sparse":
        monkeypatch.setattr(sampling, "MAX_DENSE_COSTS", 0)
    counts = [count_in_band(wrn101, budget, kind, tol) for kind, budget, tol in BAND_CASES]
    assert counts == [brute_force_count(wrn101, budget, kind, tol) for kind, budget, tol in BAND_CASES]
    assert 0 in counts and max(counts) > 1000  # empty and crowded bands both checked
    # Digits carried between limbs: with 4-bit limbs the same counts need several of them.
    monkeypatch.setattr(sampling, "LIMB_BITS", 4)
    assert [count_in_band(wrn101, budget, kind, tol) for kind, budget, tol in BAND_CASES] == counts


@pytest.mark.parametrize("kind,budget,tolerance", [("params", 143_814, 0.05), ("macs", 1_400_000, 0.1)])
def test_count_in_band_is_exact_beyond_32_bits(kind, budget, tolerance):
    """wrn-22-1 (9 blocks, 20^3 x 23^6 ~ 1.2e12 networks): counts above 2^32 agree with Python integers."""
    table = CostTable.build(parse_arch("wrn-22-1"), CANDIDATE_SETS["released"], (8, 8), 10)
    count = count_in_band(table, budget, kind, tolerance)
    assert count > 2**32 and count == reference_count(table, budget, kind, tolerance)


def test_count_in_band_matches_the_162k_band_probability():
    """The paper set's 162.2K band: the exact count over all 21^18 networks is the probability of a
    uniform proposal landing there (3.3903e-7, computed above by a float convolution)."""
    paper = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], CIFAR, 10)
    space = math.prod(len(t) for t in paper.types)
    count = count_in_band(paper, 162_200)
    assert count == 213_888_836_022_237_441  # > 2^64 would need limbs; this one is ~2e17
    assert count / space == pytest.approx(band_probability(paper, 162_200), rel=1e-9)
    released = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["released"], CIFAR, 10)
    count = count_in_band(released, 162_200)
    assert count > 2**64
    assert count / math.prod(len(t) for t in released.types) == pytest.approx(
        band_probability(released, 162_200), rel=1e-9
    )


def test_count_in_band_is_fast_on_wrn_40_2():
    """18 slots, 23 types, every budget of the paper's CIFAR-10 configuration: well under a second
    each (about 5-50 ms on one core; the dict programme takes ~12 s for 811.4K alone). Timed in
    this process's CPU time, which other work on a loaded machine does not add to."""
    table = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["released"], CIFAR, 10)
    for budget in (811_400, 556_000, 404_200, 289_200, 217_000, 162_200, 200_000, 400_000, 800_000):
        start = time.process_time()
        assert count_in_band(table, budget) > 1000
        assert time.process_time() - start < 1.0, budget


def test_a_band_with_fewer_networks_than_samples_fails_at_once_with_the_count(wrn101):
    """wrn-10-1 at 50,000 params +-2.5 % holds 4 networks: 12 samples fail before any draw, saying so;
    4 samples are exactly those 4 (the sampler finds every one)."""
    message = (
        "budget 50000 params (+-2.5%) holds only 4 distinct wrn-10-1 networks of these candidates, "
        "fewer than samples (12); allowed: samples at most 4"
    )
    with pytest.raises(BlockswapError, match=re.escape(message)):
        sample_candidates(wrn101, 50_000, 12, seed=0)
    frame = sample_candidates(wrn101, 50_000, 4, seed=0)
    assert len(frame) == 4 == brute_force_count(wrn101, 50_000, "params", 0.025)


KEEP = ["--arch", "resnet-18", "--budget", "5e6", "--samples", "4", "--dataset", "imagenet", "--image-size", "32"]
SPEC = "torchvision:resnet18:/weights/never/read.pth"  # sampling reads the teacher's names, not its file


def test_sample_keeps_the_named_blocks_of_a_pretrained_teacher(tmp_path):
    out = tmp_path / "candidates.csv"
    assert main(["sample", *KEEP, "--keep", "layer1,layer3.1", "--teacher", SPEC, "--out", str(out)]) == 0
    genotypes = [g.split() for g in pd.read_csv(out)["genotype"]]
    assert len(genotypes) == 4 and len({" ".join(g) for g in genotypes}) == 4
    for genotype in genotypes:
        kept = [i for i, block in enumerate(genotype) if block == "T"]
        assert kept == [0, 1, 5]  # layer1's two BasicBlocks and layer3's second
    from blockswap.provenance import read_sidecar

    assert read_sidecar(out)["kept"] == {"0": "T", "1": "T", "5": "T"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--keep", "layer1"], "--keep names blocks of a pretrained teacher, and no pretrained teacher is given"),
        (
            ["--keep", "layer9", "--teacher", SPEC],
            "--keep 'layer9' is not a block of resnet18; allowed: layer1 (.0-.1)",
        ),
        (["--keep", "layer1", "--teacher", "torchvision:resnet50:/w.pth"], "skeleton is resnet-50, not resnet-18"),
    ],
)
def test_sample_keep_mistakes_are_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "candidates.csv"
    assert main(["sample", *KEEP, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
