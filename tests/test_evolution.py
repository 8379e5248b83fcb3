"""Guided search: regularised evolution against random sampling inside a budget band, on a
toy fitness with a known optimum (no network is built), and the resumable history file."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from blockswap import CANDIDATE_SETS, BlockswapError, parse_arch
from blockswap.cli import main
from blockswap.networks.genotype import Genotype
from blockswap.search.evolution import (
    HISTORY_COLUMNS,
    Proposer,
    SearchSettings,
    best_so_far,
    choice_of,
    genotype_key,
    history_winner,
    read_history,
    run_search,
    scaled_sizes,
    search_to_file,
)
from blockswap.search.sampling import CostTable, sample_candidates

BUDGET = 404_200


@pytest.fixture(scope="module")
def table():
    return CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], (32, 32), 10)


@pytest.fixture(scope="module")
def target(table):
    """The optimum of the toy fitness: one network of the band, far from where random draws land."""
    genotype = sample_candidates(table, BUDGET, 1, seed=12345)["genotype"].iloc[0]
    return choice_of(table, Genotype.parse(genotype))


def toy(target, sign=1.0):
    """Fitness = blocks that match the target (18 = the optimum), as a search's evaluate."""
    calls = []

    def evaluate(key, choice):
        calls.append(key)
        matches = float((choice == target).sum())
        return {"fitness": sign * matches, "fisher": matches, "seconds": 0.0}

    evaluate.calls = calls
    return evaluate


def settings(method, seed, samples=200, **kw):
    return SearchSettings(method=method, budget=BUDGET, samples=samples, seed=seed, **kw)


@pytest.mark.slow
def test_evolution_beats_random_on_a_fitness_with_a_known_optimum(table, target):
    finals = {"random": [], "evolution": []}
    for seed in range(5):
        for method, found in finals.items():
            history = run_search(table, settings(method, seed, samples=1000), toy(target))
            found.append(history["fitness"].max())
    # A random network matches about 1 block in 20 of the target; evolution climbs towards all 18
    # (measured: random 5-6, evolution 10-13 of 18 after 1000 evaluations).
    assert max(finals["random"]) <= 7
    assert min(finals["evolution"]) >= max(finals["random"]) + 3, finals
    assert np.mean(finals["evolution"]) >= 10, finals


@pytest.mark.slow
def test_lower_is_better_proxies_are_minimised(table, target):
    history = run_search(table, settings("evolution", 0, samples=600, higher_is_better=False), toy(target, sign=-1.0))
    best = run_search(table, settings("random", 0, samples=600), toy(target))["fitness"].max()
    assert -history["fitness"].min() >= best + 3


def test_every_evaluation_is_distinct_and_inside_the_band_and_mutants_change_one_block(table, target):
    for seed in range(3):
        history = run_search(table, settings("evolution", seed, samples=150, tolerance=0.01), toy(target))
        assert ((history["params"] - BUDGET).abs() < 0.01 * BUDGET).all()
        assert history["genotype"].is_unique and len(history) == 150
        p, _ = scaled_sizes(150)
        assert history["parent"].head(p).isna().all() and history["parent"].iloc[p:].notna().all()
        for row in history.iloc[p:].itertuples():
            parent = history["genotype"].iloc[row.parent].split()
            child = row.genotype.split()
            changed = [i for i, (a, b) in enumerate(zip(parent, child)) if a != b]
            assert changed == [row.slot]
            assert row.evaluation - p <= row.parent < row.evaluation  # a member of the living population


def test_same_seed_same_history_and_other_seed_other_history(table, target):
    a = run_search(table, settings("evolution", 7, samples=80), toy(target))
    b = run_search(table, settings("evolution", 7, samples=80), toy(target))
    c = run_search(table, settings("evolution", 8, samples=80), toy(target))
    pd.testing.assert_frame_equal(a, b)
    assert a["genotype"].tolist() != c["genotype"].tolist()


def test_random_history_is_the_sampled_candidates_and_evolution_starts_from_them(table, target):
    sampled = sample_candidates(table, BUDGET, 60, seed=3)["genotype"].tolist()
    random = run_search(table, settings("random", 3, samples=60), toy(target))
    evolution = run_search(table, settings("evolution", 3, samples=60), toy(target))
    assert random["genotype"].tolist() == sampled
    p, _ = scaled_sizes(60)
    assert evolution["genotype"].head(p).tolist() == sampled[:p]
    assert random["parent"].isna().all()


def test_fitness_is_seeded_by_the_genotype_not_by_its_position(table, target):
    evaluate = toy(target)
    history = run_search(table, settings("evolution", 0, samples=30), evaluate)
    keys = [genotype_key(table, choice_of(table, Genotype.parse(g))) for g in history["genotype"]]
    assert evaluate.calls == keys and len(set(keys)) == 30


def test_population_and_tournament_scale_down_with_few_evaluations():
    assert scaled_sizes(1000) == (64, 10)
    assert scaled_sizes(200) == (64, 10)
    assert scaled_sizes(60) == (20, 3)
    assert scaled_sizes(6) == (2, 2)
    assert scaled_sizes(1) == (2, 2)
    with pytest.raises(BlockswapError, match="tournament"):
        scaled_sizes(100, population=4, tournament=5)


def test_a_population_without_new_mutants_in_the_band_is_one_clear_error(table, target, monkeypatch):
    monkeypatch.setattr(Proposer, "mutants", lambda self, choice, seen: [])
    with pytest.raises(BlockswapError, match="too narrow for evolution"):
        run_search(table, settings("evolution", 0, samples=30), toy(target))


def test_a_band_with_fewer_networks_than_evaluations_is_refused(table, target):
    with pytest.raises(BlockswapError, match="fewer than samples"):
        run_search(table, settings("evolution", 0, samples=50, tolerance=1e-7), toy(target))


class Stop(Exception):
    pass


def interrupting(evaluate, after):
    count = [0]

    def wrapped(key, choice):
        if count[0] == after:
            raise Stop
        count[0] += 1
        return evaluate(key, choice)

    return wrapped


def test_an_interrupted_search_resumes_to_the_identical_history(table, target, tmp_path):
    whole = tmp_path / "whole.csv"
    search_to_file(table, settings("evolution", 5, samples=60), toy(target), whole)
    out = tmp_path / "resumed.csv"
    with pytest.raises(Stop):
        search_to_file(table, settings("evolution", 5, samples=60), interrupting(toy(target), 37), out)
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and partial.is_file()
    with open(partial, "ab") as fh:
        fh.write(b"37,BG(2")  # a line cut short by the kill
    evaluate = toy(target)
    search_to_file(table, settings("evolution", 5, samples=60), evaluate, out)
    assert len(evaluate.calls) == 60 - 37  # only the missing evaluations are measured
    assert out.read_text() == whole.read_text() and not partial.exists()
    frame, record = read_history(out)
    assert record["resumed_from"] == 37 and record["population_used"] == 20 and len(frame) == 60


def test_a_checkpoint_of_another_search_is_refused(table, target, tmp_path):
    out = tmp_path / "h.csv"
    with pytest.raises(Stop):
        search_to_file(table, settings("evolution", 5, samples=40), interrupting(toy(target), 20), out)
    with pytest.raises(BlockswapError, match="another search"):
        search_to_file(table, settings("evolution", 6, samples=40), toy(target), out)


def test_a_checkpoint_row_that_this_search_would_not_propose_is_refused(table, target, tmp_path):
    out = tmp_path / "h.csv"
    with pytest.raises(Stop):
        search_to_file(table, settings("evolution", 5, samples=40), interrupting(toy(target), 20), out)
    partial = out.with_name(out.name + ".partial")
    lines = partial.read_text().splitlines(keepends=True)
    other = sample_candidates(table, BUDGET, 1, seed=999)["genotype"].iloc[0]
    row = pd.read_csv(partial, skiprows=1).iloc[-1]
    lines[-1] = lines[-1].replace(row["genotype"], other)
    partial.write_text("".join(lines))
    with pytest.raises(BlockswapError, match="belongs to another search"):
        search_to_file(table, settings("evolution", 5, samples=40), toy(target), out)


def test_best_of_the_first_n_and_the_winner(table, target, tmp_path):
    out = tmp_path / "h.csv"
    history = search_to_file(table, settings("evolution", 2, samples=50), toy(target), out)
    winner = history_winner(out)
    assert winner["fitness"] == history["fitness"].max()
    assert winner["candidate"] == int(history["fitness"].idxmax())  # ties: the earlier evaluation
    assert winner["genotype"] == history["genotype"].iloc[winner["candidate"]].split()
    first = history_winner(out, first=5)
    assert first["fitness"] == history["fitness"].head(5).max() and first["candidate"] < 5
    assert list(best_so_far(history["fitness"], True)) == list(history["fitness"].cummax())
    with pytest.raises(BlockswapError, match="--first"):
        history_winner(out, first=51)
    assert main(["best", str(out), "--first", "10", "--out", str(tmp_path / "b.json")]) == 0
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["candidate"] < 10 and Genotype.of(record["genotype"])


def test_an_edited_history_is_refused(table, target, tmp_path):
    out = tmp_path / "h.csv"
    search_to_file(table, settings("random", 2, samples=10), toy(target), out)
    out.write_text(out.read_text().replace("\n1,", "\n2,", 1))
    with pytest.raises(BlockswapError):
        read_history(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,message",
    [
        (["--proxy", "nonsense"], "unknown proxy"),
        (["--population", "1"], "population of at least 2"),
        (["--budget", "1000"], "outside what"),
        (["--method", "annealing"], "invalid choice"),
    ],
)
def test_bad_search_arguments_are_one_line(argv, message, tmp_path, capsys):
    base = [
        "search",
        "--arch",
        "wrn-16-2",
        "--budget",
        "60000",
        "--samples",
        "4",
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "h.csv"),
    ]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h.csv").exists()


@pytest.mark.slow
def test_the_search_command_measures_the_proxy_of_the_registry(tmp_path):
    out = tmp_path / "h.csv"
    argv = [
        "search",
        "--method",
        "evolution",
        "--arch",
        "wrn-16-2",
        "--budget",
        "60000",
        "--samples",
        "6",
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--proxy",
        "l2_norm",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    frame, record = read_history(out)
    assert list(frame.columns) == HISTORY_COLUMNS and len(frame) == 6
    assert record["search"]["proxy"] == "l2_norm" and record["search"]["higher_is_better"] is True
    assert (frame["fitness"] != frame["fisher"]).all()  # the fitness is the asked proxy, Fisher beside it
    assert record["population_used"] == 2 and record["tournament_used"] == 2


# --- in the workflow --------------------------------------------------------------------------------


def plan_of(tmp_path, overlay):
    from helpers import GENOTYPES, ROOT

    from blockswap.planning.config_file import load_config
    from blockswap.planning.plan import plan_networks

    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    config = load_config([ROOT / "config" / "config.yaml", path])
    return plan_networks(config, GENOTYPES, "results/x")


def test_the_comparison_plans_winners_and_best_of_n_per_search_seed(tmp_path):
    plans = plan_of(tmp_path, {})
    compared = [p for p in plans.values() if p.method in ("randomsearch", "evolution", "bestofn")]
    assert sorted(p.name for p in compared if p.method == "evolution") == [
        "evolution-60000-s0",
        "evolution-60000-s1",
        "evolution-60000-s2",
    ]
    assert {p.first for p in compared if p.method == "bestofn"} == {1, 5, 20}
    assert all(p.seeds == (0,) and p.searched for p in compared)  # distilled from the ablation's teacher
    assert plans["bestofn-60000-5-s2"].genotype == "results/x/compare/60000/random/seed-2/bestof-5.json"


@pytest.mark.parametrize(
    "overlay,message",
    [
        ({"search": {"tournament": 65}}, "search.tournament: 65 is larger than search.population"),
        ({"search": {"proxy": "nonsense"}}, "search.proxy: 'nonsense' is not one of ['fisher'"),
        ({"search": {"method": "annealing"}}, "search.method"),
        ({"comparison": {"trained": 6}}, "comparison.trained: 6 is more than the 5"),
        ({"comparison": {"bestof": [41]}}, "comparison.bestof: [41] exceed the 40 evaluations"),
        ({"comparison": {"seeds": [], "trained": 0}}, "comparison.trained and comparison.bestof need comparison.seeds"),
        ({"comparison": {"budgets": [5000]}}, "comparison.budgets: budget 5000 params"),
    ],
)
def test_bad_guided_search_settings_are_one_line_before_any_job(tmp_path, overlay, message):
    with pytest.raises(BlockswapError) as err:
        plan_of(tmp_path, overlay)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_the_compare_target_plans_its_jobs_on_a_finished_run(tmp_path, miniature):
    """`snakemake compare` on the default configuration, scaled down (a dry run on a copy of the
    default's miniature run, conftest.py): histories of both methods for two search seeds, the
    winners and a best-of-N trained from that run's teacher, the comparison tables and figure.
    The same rules run for real in config/paper-cifar10.yaml's miniature, whose `all` includes them
    (tests/test_paper_configs.py reads their tables there)."""
    from helpers import copy_run, run_miniature
    from snakemake_log import job_counts

    workdir = copy_run(miniature("config.yaml"), tmp_path / "run")
    overlay = tmp_path / "compare.yaml"
    comparison = {"budgets": [30000], "seeds": [0, 1], "samples": 6, "trained": 1, "bestof": [2]}
    overlay.write_text(yaml.safe_dump({"comparison": comparison}))
    proc = run_miniature("config.yaml", None, workdir, "-n", target="compare", overlays=[overlay])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    # 2 methods x 2 search seeds; the first seed's random and evolution winners and its best of 2,
    # distilled from the miniature run's teacher, which is not trained again.
    assert counts["search_history"] == 4 and counts["train_student"] == 3, counts
    assert "train_teacher" not in counts and "score" not in counts
    for rule in ("search_curves_table", "search_curves_figure", "comparison_table"):
        assert rule in counts, (rule, counts)
    assert not (workdir / "results" / "tiny" / "compare").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_search_curves_table_and_figure_from_histories(table, target, tmp_path):
    from blockswap.reporting.search_tables import search_curves
    from blockswap.stats.intervals import mean_interval

    paths = []
    for method in ("random", "evolution"):
        for seed in range(5):
            path = tmp_path / f"{method}-{seed}.csv"
            search_to_file(table, settings(method, seed, samples=300), toy(target), path)
            paths.append(path)
    curves = search_curves(paths)
    assert curves["evaluations"].tolist() == [1, 2, 5, 10, 20, 50, 100, 200, 300]
    last = curves.iloc[-1]
    assert last["random n"] == last["evolution n"] == last["paired seeds"] == 5
    assert last["evolution low"] > last["random high"] and last["evolution ahead"] == 5
    early = curves[curves["evaluations"] <= scaled_sizes(300)[0]]
    assert (early["evolution mean"] == early["random mean"]).all() and (early["evolution ahead"] == 0).all()
    mean, low, high, n = mean_interval([1.0, 2.0, 3.0])
    assert high == pytest.approx(2 + 4.302653 / 3**0.5, rel=1e-5)
    assert (mean, n) == (2.0, 3) and low == pytest.approx(2 - 4.302653 / 3**0.5, rel=1e-5)
    assert main(["figure", "search_curves", *map(str, paths), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "c.pdf").is_file()
    with pytest.raises(BlockswapError, match="with seed 0"):
        search_curves([paths[0], paths[0]])


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "changed after it was written"),
        (lambda p: p.with_name(p.name + ".provenance.json").unlink(), "no search record"),
        (lambda p: p.write_text("nothing,here\n1,2\n"), "changed after it was written"),
        (lambda p: p.unlink(), "h.csv"),
    ],
)
def test_best_refuses_a_damaged_history_in_one_line(table, target, tmp_path, capsys, damage, message):
    out = tmp_path / "h.csv"
    search_to_file(table, settings("random", 1, samples=8), toy(target), out)
    damage(out)
    assert main(["best", str(out), "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "b.json").exists()
