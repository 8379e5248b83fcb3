"""Budgeted candidate sampling: the band, the candidate set, seeding, impossible budgets."""

import subprocess
import sys

import pandas as pd
import pytest

from blockswap import CANDIDATE_SETS, BlockswapError, Genotype, NetworkSpec, parse_arch
from blockswap.cli import main
from blockswap.sampling import CostTable, cost_of, sample_candidates

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


def test_macs_budget(wrn402_paper):
    frame = sample_candidates(wrn402_paper, 60e6, 50, seed=0, budget_kind="macs")
    assert ((frame["macs"] - 60e6).abs() < 0.025 * 60e6).all()


@pytest.mark.parametrize("budget", [100_000, 3_000_000])
def test_budget_outside_the_reachable_range_fails_at_once(wrn402_paper, budget):
    with pytest.raises(BlockswapError, match="outside what wrn-40-2 can reach with these candidates: 146538 to 2243546 params"):
        sample_candidates(wrn402_paper, budget, 10, seed=0)


def test_unfillable_budget_fails_with_a_count_and_a_hint(monkeypatch, wrn402_paper):
    import blockswap.sampling as sampling

    monkeypatch.setattr(sampling, "MAX_DRAWS_PER_SAMPLE", 20)
    with pytest.raises(BlockswapError, match=r"found only \d+ distinct candidates .* after \d+ draws; ask for fewer"):
        sample_candidates(wrn402_paper, 2_200_000, 1000, seed=0)


def test_released_set_reaches_the_162k_network_the_paper_set_barely_does():
    released = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["released"], CIFAR, 10)
    frame = sample_candidates(released, 162_200, 200, seed=0)
    assert len(frame) == 200


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--budget", "1e5"], "outside what wrn-40-2 can reach"),
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


def test_cli_output_is_byte_identical_for_a_seed(tmp_path):
    def run(name):
        subprocess.run(
            [sys.executable, "-m", "blockswap.cli", "sample", "--arch", "wrn-40-2", "--budget", "404200",
             "--samples", "200", "--seed", "3", "--out", str(tmp_path / name)],
            check=True, capture_output=True,
        )
        return (tmp_path / name).read_bytes()

    assert run("a.csv") == run("b.csv")
    header = (tmp_path / "a.csv").read_text().splitlines()[0]
    assert header == "candidate,genotype,params,macs,ops"
    assert (tmp_path / "a.csv.provenance.json").is_file()
