"""Tables and figures from result files: Table 2 layout with the paper's values, Table 1 statistics."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import GENOTYPES

from blockswap import BlockswapError, Genotype, NetworkSpec
from blockswap.reporting import figures
from blockswap.reporting.proxy_tables import correlation_display, correlation_table
from blockswap.reporting.report import latex, markdown, table2, table2_display


def student_row(method, network, arch, genotype, seed, error, budget=None, candidate=None, dataset="cifar10"):
    cost = NetworkSpec.create(arch, genotype).cost((32, 32))
    return {
        "method": method,
        "network": network,
        "arch": arch,
        "genotype": str(NetworkSpec.create(arch, genotype).genotype),
        "budget": budget,
        "seed": seed,
        "params": cost.params,
        "macs": cost.macs,
        "ops": cost.ops,
        "test_error": error,
        "test_error_top5": 0.0,
        "fisher": None,
        "candidate": candidate,
        "dataset": dataset,
    }


@pytest.fixture
def students():
    released = Genotype.load(GENOTYPES / "blockswap-217k.yaml")
    rows = []
    for seed, (t, r, b, m) in enumerate([(4.0, 7.3, 4.6, 5.0), (4.2, 7.5, 4.8, 5.2), (3.8, 7.1, 4.7, 5.1)]):
        rows += [
            student_row("teacher", "teacher", "wrn-40-2", None, seed, t),
            student_row("reduced", "reduced-wrn-16-1", "wrn-16-1", None, seed, r),
            student_row("blockswap", "blockswap-217000", "wrn-40-2", released, seed, b, budget=217000),
            student_row("moonshine", "moonshine-bg2-4", "wrn-40-2", "BG(2,4)", seed, m),
        ]
    return pd.DataFrame(rows)


def test_table2_aggregates_seeds_and_puts_the_papers_values_beside(students):
    table = table2(students)
    assert list(table["method"]) == ["teacher", "reduced", "moonshine", "paper-only", "paper-only", "blockswap"]
    paper_only = table[table["method"] == "paper-only"]
    # Rows the paper trained that are not reproduced: the paper's numbers and what it trained, nothing of ours.
    assert list(paper_only["network"]) == ["DARTS cell", "CondenseNet-86"] and paper_only["error mean"].isna().all()
    assert list(paper_only["paper error"]) == ["4.49 +- 0.03", "4.95 +- 0.05"]
    assert paper_only["note"].str.contains("not reproduced here").all()
    teacher = table.iloc[0]
    assert (teacher["D-W"], teacher["P (K)"], teacher["Ops (M)"], teacher["n"]) == ("40-2", 2243.5, 328.3, 3)
    assert teacher["error mean"] == 4.0 and teacher["error std"] == pytest.approx(0.16, abs=0.01)
    assert teacher["paper error"] == "3.96 +- 0.09"
    blockswap = table[table["method"] == "blockswap"].iloc[0]
    assert blockswap["paper P (K)"] == 217.0 and blockswap["paper error"] == "4.68 +- 0.37"
    assert pd.isna(table[table["method"] == "moonshine"].iloc[0]["paper error"])  # not a Table 2 row
    assert table[table["method"] == "reduced"].iloc[0]["paper error"] == "7.32 +- 0.02"


def test_paper_values_only_for_cifar10(students):
    table = table2(students.assign(dataset="digits"))
    assert "paper error" not in table and "paper-only" not in set(table["method"])


def test_snip_rows_match_the_paper_by_size_and_notes_become_rows(students):
    snip = [
        student_row("snip", "snip-217000", "wrn-40-2", None, seed, e, budget=217000)
        for seed, e in enumerate([5.4, 5.6, 5.5])
    ]
    for row in snip:
        row["params"] = 217000  # what remains after pruning to the budget
    table = table2(pd.concat([students, pd.DataFrame(snip)], ignore_index=True), ["no Moonshine network near 1"])
    row = table[table["method"] == "snip"].iloc[0]
    assert row["paper P (K)"] == 217.0 and row["paper error"] == "5.53 +- 0.08" and row["paper Ops (M)"] == "-"
    assert table.iloc[-1]["method"] == "note" and table.iloc[-1]["note"] == "no Moonshine network near 1"
    assert "no Moonshine network near 1" in markdown(table2_display(table))


def imagenet_row(method, network, genotype, error, top5, budget=None):
    row = student_row(
        method,
        network,
        "resnet-34" if method != "reduced" else "resnet-18",
        genotype,
        0,
        error,
        budget=budget,
        dataset="imagenet",
    )
    cost = NetworkSpec.create(row["arch"], genotype, 1000).cost((224, 224))
    return {**row, "params": cost.params, "macs": cost.macs, "ops": cost.ops, "test_error_top5": top5}


def test_table3_layout_and_the_papers_values():
    from blockswap.reporting.report import table3

    small = Genotype.load(GENOTYPES / "blockswap-imagenet-3.1m.yaml")
    students = pd.DataFrame(
        [
            imagenet_row("teacher", "teacher", None, 27.0, 9.0),
            imagenet_row("reduced", "reduced-resnet-18", None, 30.0, 11.0),
            imagenet_row("moonshine", "moonshine-gn", "G(N)", 31.0, 11.5),
            imagenet_row("blockswap", "blockswap-3100000", small, 30.5, 11.2, budget=3100000),
        ]
    )
    table = table3(students)
    assert list(table["method"]) == ["teacher", "reduced", "moonshine", "blockswap", "note"]
    blockswap = table[table["method"] == "blockswap"].iloc[0]
    assert (blockswap["P (M)"], blockswap["Ops (G)"]) == (3.08, 0.812)  # docs/paper.md s.8
    assert (table.iloc[0]["P (M)"], table.iloc[0]["Ops (G)"]) == (21.79, 3.669)  # the paper: 21.8M, 3.669G
    assert (blockswap["paper top-1"], blockswap["paper top-5"]) == (29.57, 10.20)
    moonshine = table[table["method"] == "moonshine"].iloc[0]
    assert (moonshine["paper P (M)"], moonshine["paper top-1"]) == (3.1, 30.16)
    assert table.iloc[-1]["note"].startswith("ResNet-18-0.5")


def bestof_rows(budget=404200):
    rows = []
    for n, errors in ((10, (4.9, 4.8)), (1000, (4.2, 4.3))):
        for seed, e in enumerate(errors):
            rows.append(student_row("bestof", f"bestof-{n}", "wrn-40-2", "G(16)", seed, e, budget=budget, candidate=3))
    return pd.DataFrame(rows)


def moonshine_rows(*blocks):
    return pd.DataFrame(
        [
            student_row("moonshine", f"moonshine-{i}", "wrn-40-2", block, seed, 5.0 + i)
            for i, block in enumerate(blocks)
            for seed in range(2)
        ]
    )


def test_samples_table_with_the_single_blocktype_reference(students):
    from blockswap.reporting.report import samples_table

    g16 = moonshine_rows("G(16)").assign(network="moonshine-g16")  # 406.4K: 0.5 % off 404.2K
    table = samples_table(pd.concat([students, g16, bestof_rows()], ignore_index=True))
    assert table["samples"].tolist()[:2] == [10, 1000] and table["n"].tolist()[:3] == [2, 2, 2]
    assert table["error mean"].tolist()[:2] == [4.85, 4.25]
    assert table["paper error"].tolist()[:3] == [4.85, 4.21, 4.45]
    assert table.iloc[2]["network"] == "moonshine-g16" and "within +-2.5% of the 404200" in table.iloc[2]["note"]
    assert table.iloc[-1]["note"].startswith('the paper\'s "400K" budget is the 404.2K band (+-2.5%)')
    with pytest.raises(BlockswapError, match="no best-of-N students"):
        samples_table(students)


def test_a_single_blocktype_network_far_from_the_budget_is_not_marked(students):
    from blockswap.reporting.report import samples_table

    # The fixture's only single-blocktype network is all-BG(2,4), 214.1K: 47 % off 404.2K.
    table = samples_table(pd.concat([students, bestof_rows()], ignore_index=True))
    assert "moonshine-bg2-4" not in set(table["network"]) and len(table) == 4  # 2 best-of rows, 2 notes
    assert table.iloc[-1]["note"].startswith("no single-blocktype network lies within +-2.5% of 404200 params")
    assert "closest: moonshine-bg2-4 at 214106" in table.iloc[-1]["note"]


def test_the_200k_reference_follows_the_tolerance_or_the_pairing():
    from blockswap.reporting.single_blocktype import reference_network

    # BG(2,M/8) (189.9K) is nearest to 200K in absolute terms but 5 % off; BG(2,4) (214.1K) is 7 % off.
    moonshine = moonshine_rows("BG(2,M/8)", "BG(2,4)", "G(4)")
    assert reference_network(moonshine, 200000).network is None
    assert "closest: moonshine-0 at 189" in reference_network(moonshine, 200000).note
    assert reference_network(moonshine, 200000, tolerance=0.06).network == "moonshine-0"
    assert reference_network(moonshine, 200000, pairing={200000: "BG(2,4)"}).network == "moonshine-1"
    assert reference_network(moonshine, 800000).network == "moonshine-2"  # G(4): 814.6K, 1.8 % off
    with pytest.raises(BlockswapError, match="all-G\\(16\\) paired with budget 200000 is not in"):
        reference_network(moonshine, 200000, pairing={200000: "G(16)"})
    assert reference_network(moonshine, 200000, kind="latency").network is None


def test_figure_2_marks_the_paired_network_and_names_none_otherwise(tmp_path, monkeypatch):
    random = pd.DataFrame(
        [
            student_row(
                "random", f"random-200000-{i}", "wrn-40-2", "BG(2,4)", 0, 5.0 + i / 10, budget=200000, candidate=i
            )
            for i in range(4)
        ]
    )
    students = pd.concat([random, moonshine_rows("BG(2,M/8)", "BG(2,4)")], ignore_index=True)
    drawn = []
    monkeypatch.setattr(
        figures, "save", lambda fig, out: drawn.append([line.get_label() for line in fig.axes[0].lines])
    )
    figures.random_students(students, tmp_path / "r.png")
    figures.random_students(students, tmp_path / "r.png", pairing={200000: "BG(2,4)"})
    assert not any(label.startswith("single type") for label in drawn[0])
    assert "single type (moonshine-1)" in drawn[1]


def test_display_forms(students):
    shown = table2_display(table2(students))
    assert "4.00 +- 0.16" in list(shown["error (%)"])
    tex = latex(shown)
    assert tex.startswith(r"\begin{tabular}") and r"$\pm$" in tex and r"\_" not in tex.split(r"\midrule")[0]
    md = markdown(shown)
    assert md.splitlines()[1].startswith("|---") and "nan" not in md


def test_correlation_statistics(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    errors = np.linspace(10, 20, n)
    rows = [
        student_row(
            "random",
            f"random-217000-{i}",
            "wrn-16-1",
            None,
            seed,
            errors[i] + 0.01 * seed,
            budget=217000,
            candidate=i,
            dataset="digits",
        )
        for i in range(n)
        for seed in (0, 1)
    ]
    students = pd.DataFrame(rows)
    proxies = pd.DataFrame(
        {
            "candidate": range(n),
            "fisher": -errors,  # perfectly anti-monotone: rho = -1
            "accuracy@5": rng.permutation(n).astype(float),
            "params": np.arange(n) * 1000 + 50_000,  # whole numbers, monotone in the error: rho = +1
            "macs": np.arange(n) * 90_000 + 4_000_000,
        }
    )
    proxies.to_csv(tmp_path / "p.csv", index=False)
    table = correlation_table(students, {"217000": tmp_path / "p.csv"})
    fisher = table[table["proxy"] == "fisher"].iloc[0]
    assert fisher["spearman"] == pytest.approx(-1) and fisher["kendall"] == pytest.approx(-1) and fisher["n"] == n
    assert fisher["spearman_low"] == pytest.approx(-1) and fisher["spearman_high"] == pytest.approx(-1)
    accuracy = table[table["proxy"] == "accuracy"].iloc[0]
    assert accuracy["minibatches"] == 5 and accuracy["spearman_low"] < accuracy["spearman"] < accuracy["spearman_high"]
    assert table[table["proxy"] == "params"].iloc[0]["spearman"] == pytest.approx(1)
    assert fisher["quality"] == pytest.approx(1) and bool(fisher["above_params"])  # params is backwards here
    assert pd.isna(fisher["paper_spearman"])  # digits: not the paper's setting
    display = correlation_display(table)
    assert display["proxy"].tolist()[0] == "fisher" and display["k"].tolist()[:1] == [1]
    assert display.loc[0, "quality (tau)"] == "+1.000 [+1.000, +1.000]"
    again = correlation_table(students, {"217000": tmp_path / "p.csv"})
    pd.testing.assert_frame_equal(table, again)  # bootstrap is seeded
    # Two seeds a network, 0.01 points apart: training repeats the ranking, the ceiling is about 1.
    assert fisher["seeds"] == 2 and fisher["seed_tau"] == pytest.approx(1)
    assert fisher["seed_tau_low"] == pytest.approx(1)
    assert fisher["ceiling_tau"] == pytest.approx(1, abs=2e-3)
    assert fisher["quality_of_ceiling"] == pytest.approx(fisher["quality"] / fisher["ceiling_tau"])
    assert display.loc[0, "seed-to-seed tau"] == "+1.000 [+1.000, +1.000]"
    assert display.loc[0, "ceiling tau (seed mean)"] == f"{fisher['ceiling_tau']:+.3f}"


def shootout_students(seeds, noise=0.0, n=8, budgets=(30000, 60000), seed=0):
    """Random students of `budgets` trained under `seeds`, their errors a quality per network plus
    `noise` (points) per run, and one proxies file per budget whose fisher follows the quality."""
    rng = np.random.default_rng(seed)
    rows, proxies = [], {}
    for budget in budgets:
        quality = rng.normal(10, 1, n)
        for i in range(n):
            for s in seeds:
                rows.append(
                    {
                        "method": "random",
                        "network": f"random-{budget}-{i}",
                        "arch": "wrn-10-1",
                        "genotype": "S S S",
                        "budget": budget,
                        "seed": s,
                        "params": budget + i,
                        "macs": 1000 + i,
                        "ops": 1,
                        "test_error": quality[i] + rng.normal(0, noise) + budget / 1e4,
                        "test_error_top5": 0.0,
                        "fisher": None,
                        "candidate": i,
                        "dataset": "digits",
                    }
                )
        proxies[str(budget)] = pd.DataFrame(
            {"candidate": range(n), "fisher": -quality, "params": budget + np.arange(n), "macs": 1000 + np.arange(n)}
        )
    return pd.DataFrame(rows), proxies


def write_proxies(tmp_path, proxies) -> dict:
    files = {}
    for budget, frame in proxies.items():
        frame.to_csv(tmp_path / f"p{budget}.csv", index=False)
        files[budget] = tmp_path / f"p{budget}.csv"
    return files


def test_correlation_rows_carry_their_budgets_noise_ceiling(tmp_path):
    from blockswap.reporting.noise import ceiling_table

    students, proxies = shootout_students(seeds=(0, 1, 2), noise=1.0)
    table = correlation_table(students, write_proxies(tmp_path, proxies), resamples=200)
    ceilings = ceiling_table(students, resamples=200).set_index(ceiling_table(students)["budget"].astype(str))
    for budget in ("30000", "60000", "pooled"):  # the pooled rows' ceiling is the pooled computation's
        rows = table[table["budget"].astype(str) == budget]
        for column in ("seeds", "seed_tau", "seed_tau_low", "seed_tau_high", "ceiling_tau"):
            assert (rows[column] == ceilings.loc[budget, column]).all(), (budget, column)
        assert rows["quality_of_ceiling"].to_numpy() == pytest.approx(
            (rows["quality"] / ceilings.loc[budget, "ceiling_tau"]).to_numpy()
        )
    assert table["seeds"].eq(3).all() and table["ceiling_tau"].between(0, 1).all()
    shown = correlation_display(table)
    assert {"quality / ceiling", "ceiling tau (seed mean)", "seed-to-seed tau"} <= set(shown.columns)


def test_one_seed_per_network_leaves_the_ceiling_empty_and_mixed_seeds_are_refused(tmp_path):
    students, proxies = shootout_students(seeds=(0,))
    files = write_proxies(tmp_path, proxies)
    table = correlation_table(students, files, resamples=50)
    assert table[["seeds", "seed_tau", "ceiling_tau", "quality_of_ceiling"]].isna().all().all()
    shown = correlation_display(table)
    assert (shown["ceiling tau (seed mean)"] == "").all() and (shown["seed-to-seed tau"] == "").all()
    assert "nan" not in markdown(shown)
    figures.forest(table, tmp_path / "forest.png")  # no ceiling to draw: the figure as before
    two, _ = shootout_students(seeds=(0, 1))
    mixed = two.drop(index=two.index[(two["network"] == "random-60000-3") & (two["seed"] == 1)])
    with pytest.raises(BlockswapError, match="random-60000-3 of budget 60000 was trained under one seed"):
        correlation_table(mixed, files, resamples=50)


def test_forest_shades_the_ceiling_and_marks_the_seed_to_seed_tau(tmp_path):
    from matplotlib.patches import Polygon, Rectangle

    students, proxies = shootout_students(seeds=(0, 1), noise=0.5)
    table = correlation_table(students, write_proxies(tmp_path, proxies), resamples=100)
    drawn = {}
    real_save = figures.save

    def keep(fig, out):
        drawn["axes"] = [
            {
                # axvspan: a Rectangle in newer matplotlib, a Polygon in older; x in data units
                "spans": [
                    p.get_x() if isinstance(p, Rectangle) else np.asarray(p.get_xy())[:, 0].min()
                    for p in ax.patches
                    if isinstance(p, (Polygon, Rectangle))
                ],
                "ticks": [t.get_text() for t in ax.get_yticklabels()],
                "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
            }
            for ax in fig.axes
        ]
        real_save(fig, out)

    figures.save = keep
    try:
        figures.forest(table, tmp_path / "forest.png")
    finally:
        figures.save = real_save
    assert (tmp_path / "forest.pdf").is_file() and len(drawn["axes"]) == 3
    assert drawn["axes"][0]["ticks"][-1] == figures.SEED_ROW
    assert "attainable: |tau| <= seed-mean ceiling" in drawn["axes"][-1]["legend"]
    assert "seed-to-seed tau of error" in drawn["axes"][-1]["legend"]
    for ax, budget in zip(drawn["axes"], ("30000", "60000", "pooled")):
        ceiling = table.loc[table["budget"].astype(str) == budget, "ceiling_tau"].iloc[0]
        assert any(left == pytest.approx(-ceiling) for left in ax["spans"]), budget


def test_figures_are_written_as_png_and_pdf(tmp_path, students):
    figures.pareto(students, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 1000 and (tmp_path / "pareto.pdf").stat().st_size > 1000
    scores = pd.DataFrame({"candidate": [0, 1, 2], "params": [1e5, 1.1e5, 0.9e5], "fisher": [1.0, 3.0, 2.0]})
    scores.to_csv(tmp_path / "s.csv", index=False)
    (tmp_path / "student.json").write_text(json.dumps({"params": 1.1e5, "fisher": 3.0}))
    figures.search([tmp_path / "s.csv"], tmp_path / "student.json", tmp_path / "search.png")
    assert (tmp_path / "search.png").is_file()
    with pytest.raises(BlockswapError, match="no random students"):
        figures.random_students(students, tmp_path / "r.png")


def test_tables_and_figures_carry_provenance_sidecars(tmp_path, students, capsys):
    from blockswap.cli import main
    from blockswap.provenance import file_digest, provenance_path

    students.to_csv(tmp_path / "students.csv", index=False)
    csv, md, tex = (tmp_path / f"table2.{ext}" for ext in ("csv", "md", "tex"))
    assert (
        main(
            ["report", "table2", str(tmp_path / "students.csv"), "--csv", str(csv), "--md", str(md), "--tex", str(tex)]
        )
        == 0
    )
    meta = json.loads(provenance_path(csv).read_text())
    assert meta["kind"] == "table2" and meta["rows"] == len(pd.read_csv(csv))
    assert meta["outputs"] == [str(csv), str(md), str(tex)]
    assert meta["inputs"] == {str(tmp_path / "students.csv"): file_digest(tmp_path / "students.csv")}
    assert {"code_version", "command", "device", "wall_seconds"} <= set(meta["provenance"])

    png = tmp_path / "pareto.png"
    assert main(["figure", "pareto", str(tmp_path / "students.csv"), "--out", str(png)]) == 0
    meta = json.loads(provenance_path(png).read_text())
    assert meta["outputs"] == [str(png), str(png.with_suffix(".pdf"))] and len(meta["inputs"]) == 1


def test_table1_values_match_only_the_papers_setting():
    from blockswap.reporting.paper import table1_match

    assert table1_match("fisher", 400_000, 10, "cifar10") == -0.667
    assert table1_match("grad_norm", "800000", 100, "cifar10") == 0.558
    assert table1_match("fisher", 400_000, 5, "cifar10") is None  # not a k the paper measured
    assert (
        table1_match("fisher", 300_000, 1, "cifar10") is None and table1_match("fisher", 400_000, 1, "digits") is None
    )
    assert (
        table1_match("synflow", 400_000, 1, "cifar10") is None
        and table1_match("fisher", "pooled", 1, "cifar10") is None
    )


def test_markdown_escapes_pipes_so_columns_stay_columns():
    md = markdown(pd.DataFrame({"partial tau | params": ["+0.1 | x"], "n": [3]}))
    assert [line.count("|") - line.count("\\|") for line in md.splitlines()] == [3, 3, 3]


# --- learning curves, training time, timings, and the Fisher figure reading its table -------------


def write_training(folder, method, network, seed, epochs=3, val=False, seconds=2.0, **metrics):
    """A trained network's folder as `blockswap train` leaves it: history.csv and metrics.json."""
    folder.mkdir(parents=True)
    history = pd.DataFrame(
        {
            "epoch": range(1, epochs + 1),
            "train_loss": np.linspace(2.0, 0.5, epochs),
            "train_error": np.linspace(80.0, 20.0, epochs),
            "lr": 0.1,
            "seconds": seconds / epochs,
        }
    )
    if val:
        history.insert(4, "val_error", np.linspace(85.0, 30.0, epochs))
    history.to_csv(folder / "history.csv", index=False)
    record = {
        "arch": "wrn-16-1",
        "genotype": ["S"] * 3,
        "seed": seed,
        "params": 1000,
        "macs": 2000,
        "ops": 3000,
        "test_error": 30.0,
        "test_error_top5": 5.0,
        "dataset": "digits",
        "epochs": epochs,
        "teacher": None if method == "teacher" else "teachers/seed-0",
        "tags": {"method": method, "network": network},
        "hyperparameters": {"batch_size": 64, "drop_last": False, "val_size": 0},
        "provenance": {"wall_seconds": seconds},
        **metrics,
    }
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder / "history.csv"


@pytest.mark.slow
def test_learning_curves_figure_from_a_history_tree(tmp_path, capsys):
    from blockswap.cli import main
    from blockswap.provenance import provenance_path

    histories = [write_training(tmp_path / "teachers" / "seed-0", "teacher", "teacher", 0, val=True)]
    histories += [
        write_training(tmp_path / "students" / name / f"seed-{s}", method, name, s, val=True)
        for method, name in (("moonshine", "moonshine-g2"), ("blockswap", "blockswap-30000"))
        for s in (0, 1)
    ]
    curves = figures.read_learning_curves(histories)
    assert set(curves["method"]) == {"teacher", "moonshine", "blockswap"} and len(curves) == 5 * 3
    assert curves.groupby("network")["seed"].nunique().to_dict() == {
        "teacher": 1,
        "moonshine-g2": 2,
        "blockswap-30000": 2,
    }
    drawn = {}
    real_save = figures.save

    def keep(fig, out):
        drawn["titles"] = [ax.get_title() for ax in fig.axes]
        real_save(fig, out)

    figures.save = keep
    try:
        png = tmp_path / "figures" / "learning_curves.png"
        assert main(["figure", "learning_curves", *map(str, histories), "--out", str(png)]) == 0
    finally:
        figures.save = real_save
    assert png.stat().st_size > 1000 and png.with_suffix(".pdf").stat().st_size > 1000
    # A row per method in the paper's order, a panel per curve; validation error where there is one.
    assert drawn["titles"][:3] == [
        "teacher: training loss",
        "teacher: training error (%)",
        "teacher: validation error (%)",
    ]
    assert [t.split(":")[0] for t in drawn["titles"][::3]] == ["teacher", "moonshine", "blockswap"]
    inputs = json.loads(provenance_path(png).read_text())["inputs"]
    assert str(histories[0]) in inputs and str(histories[0].parent / "metrics.json") in inputs


def test_learning_curves_without_validation_and_a_damaged_history(tmp_path, capsys):
    from blockswap.cli import main

    good = write_training(tmp_path / "a" / "seed-0", "reduced", "reduced-wrn-10-1", 0)
    figures.learning_curves([good], tmp_path / "lc.png")  # no val_error column: two panels
    assert (tmp_path / "lc.pdf").is_file()
    bad = write_training(tmp_path / "b" / "seed-0", "reduced", "reduced-wrn-10-1", 0)
    bad.write_text(bad.read_text().replace("80.0", "180.0"))
    with pytest.raises(BlockswapError, match="train_error is '180.0'"):
        figures.read_learning_curves([bad])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "history.csv").write_text(good.read_text())  # no metrics.json beside it
    assert (
        main(["figure", "learning_curves", str(tmp_path / "c" / "history.csv"), "--out", str(tmp_path / "x.png")]) == 2
    )
    assert "metrics.json does not exist" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_students_table_carries_training_seconds_and_images_per_second(tmp_path, capsys):
    from blockswap.cli import main
    from blockswap.provenance import write_json
    from blockswap.reporting.students import read_students, students_table

    summary = tmp_path / "summary.json"
    write_json(summary, {"dataset": "digits", "splits": {"train": 1000, "val": 300, "test": 300}})
    metrics = [
        write_training(tmp_path / "t" / "seed-0", "teacher", "teacher", 0, epochs=4, seconds=8.0),
        write_training(
            tmp_path / "s" / "seed-0",
            "moonshine",
            "moonshine-g2",
            0,
            epochs=2,
            seconds=0.5,
            hyperparameters={"batch_size": 64, "drop_last": True, "val_size": 0},
        ),
    ]
    metrics = [p.with_name("metrics.json") for p in metrics]
    pretrained = tmp_path / "p" / "metrics.json"  # `blockswap evaluate`: no epochs, no training time
    pretrained.parent.mkdir()
    record = json.loads(metrics[0].read_text())
    pretrained.write_text(
        json.dumps(
            {k: v for k, v in record.items() if k not in ("epochs", "provenance")}
            | {"tags": {"method": "teacher", "network": "pretrained"}}
        )
    )
    table = students_table([*metrics, pretrained], data=summary).set_index("network")
    assert table.loc["teacher", "train_seconds"] == 8.0 and table.loc["teacher", "images_per_s"] == 500.0
    # --drop-last: 15 whole batches of 64 (960 images) an epoch, twice, in half a second.
    assert table.loc["moonshine-g2", "images_per_s"] == 3840.0
    assert table.loc["pretrained", ["train_seconds", "images_per_s"]].isna().all()
    assert students_table(metrics)["images_per_s"].isna().all()  # no data summary: seconds only
    assert students_table(metrics)["train_seconds"].tolist() == [0.5, 8.0]
    # A hold-out the network made itself (--val-size, summary without a val split) is not trained on.
    write_json(summary, {"dataset": "digits", "splits": {"train": 1000, "test": 300}})
    held = write_training(
        tmp_path / "v" / "seed-0",
        "teacher",
        "teacher",
        0,
        epochs=1,
        seconds=1.0,
        hyperparameters={"batch_size": 64, "drop_last": False, "val_size": 200},
    )
    assert students_table([held.with_name("metrics.json")], data=summary)["images_per_s"].tolist() == [800.0]
    # Through the CLI: the columns survive the checked read, and the summary is a recorded input.
    csv = tmp_path / "students.csv"
    assert main(["report", "students", *map(str, metrics), "--data", str(summary), "--csv", str(csv)]) == 0
    assert read_students([csv])["images_per_s"].tolist() == [3840.0, 500.0]
    from blockswap.provenance import provenance_path

    assert str(summary) in json.loads(provenance_path(csv).read_text())["inputs"]
    write_json(summary, {"dataset": "cifar10", "splits": {"train": 50000, "test": 10000}})
    assert (
        main(["report", "students", *map(str, metrics), "--data", str(summary), "--csv", str(tmp_path / "other.csv")])
        == 2
    )
    assert "data summary describes cifar10" in capsys.readouterr().err and not (tmp_path / "other.csv").exists()
    damaged = json.loads(metrics[0].read_text()) | {"provenance": {"wall_seconds": "soon"}}
    metrics[0].write_text(json.dumps(damaged))
    with pytest.raises(BlockswapError, match='wall_seconds is "soon"'):
        students_table(metrics)


def test_students_table_carries_each_runs_convergence(tmp_path, capsys):
    from blockswap.cli import main
    from blockswap.reporting.students import read_students, students_table

    metrics = [
        write_training(
            tmp_path / "r" / f"seed-{s}",
            "random",
            "random-30000-0",
            s,
            final_train_loss=0.25 + s,
            val_error_change=change,
            convergence_window=2,
            tags={"method": "random", "network": "random-30000-0", "budget": "30000", "candidate": "0"},
        ).with_name("metrics.json")
        for s, change in ((0, -0.5), (1, 2.5), (2, None))  # seed 2 held out no validation split
    ]
    older = write_training(tmp_path / "t" / "seed-0", "teacher", "teacher", 0).with_name("metrics.json")
    table = students_table([*metrics, older])
    assert table["final_train_loss"].tolist()[:3] == [0.25, 1.25, 2.25] and pd.isna(table["final_train_loss"].iloc[3])
    assert table["val_error_change"].tolist()[:2] == [-0.5, 2.5] and table["val_error_change"].iloc[2:].isna().all()
    assert table["convergence_window"].tolist()[:3] == [2, 2, 2]
    csv, out = tmp_path / "students.csv", tmp_path / "convergence.csv"
    assert main(["report", "students", *map(str, metrics), str(older), "--csv", str(csv)]) == 0
    assert read_students([csv])["val_error_change"].tolist()[:2] == [-0.5, 2.5]
    assert main(["report", "convergence", str(csv), "--csv", str(out)]) == 0
    rows = pd.read_csv(out).set_index("method")
    assert rows.loc["random", ["runs", "plateaued", "not_plateaued", "unknown"]].tolist() == [3, 1, 1, 1]
    assert rows.loc["random", "not_plateaued_runs"] == "random-30000-0/1" and rows.loc["teacher", "unknown"] == 1
    damaged = json.loads(metrics[0].read_text()) | {"val_error_change": "flat"}
    metrics[0].write_text(json.dumps(damaged))
    with pytest.raises(BlockswapError, match='val_error_change is "flat", expected a finite number'):
        students_table(metrics)


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path, *seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCHMARK_HEADER + "".join(f"{s}\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t{s}\n" for s in seconds))


def test_timings_table_from_benchmark_files(tmp_path, capsys):
    from blockswap.cli import main
    from blockswap.provenance import provenance_path

    root = tmp_path / "benchmarks" / "run"
    write_benchmark(root / "students" / "moonshine-g2" / "seed-0.tsv", 30.0)
    write_benchmark(root / "students" / "blockswap-30000" / "seed-1.tsv", 50.0)
    write_benchmark(root / "teachers" / "seed-0.tsv", 100.0)
    write_benchmark(root / "search" / "30000" / "score-0.tsv", 4.0, 6.0)  # repeat(2): both runs count
    write_benchmark(root / "search" / "30000" / "select.tsv", 2.0)
    write_benchmark(root / "old" / "gone.tsv", 8.0)  # a rule no pattern names: counted by its folder
    rules = {
        "train_student": f"{root}/students/{{network,[a-z0-9-]+}}/seed-{{seed,[0-9]+}}.tsv",
        "train_teacher": f"{root}/teachers/seed-{{seed}}.tsv",
        "score": f"{root}/search/{{budget}}/score-{{shard}}.tsv",
        "select": f"{root}/search/{{budget,[0-9]+}}/select.tsv",
    }
    csv, md = tmp_path / "timings.csv", tmp_path / "timings.md"
    argv = [
        "report",
        "timings",
        str(root),
        *(f"--rule={r}={p}" for r, p in rules.items()),
        "--csv",
        str(csv),
        "--md",
        str(md),
    ]
    assert main(argv) == 0
    table = pd.read_csv(csv).set_index("rule")
    assert list(table.index) == ["train_teacher", "train_student", "score", "old", "select"]
    assert table.loc["train_student", ["jobs", "total s", "max s", "mean s"]].tolist() == [2, 80.0, 50.0, 40.0]
    assert table.loc["score", ["jobs", "total s"]].tolist() == [1, 10.0]
    assert table.loc["train_teacher", "share %"] == 50.0 and table["share %"].sum() == pytest.approx(100)
    assert "| total | 6 | 200.0 | 100.0 |" in md.read_text()
    inputs = json.loads(provenance_path(csv).read_text())["inputs"]
    assert len(inputs) == 6 and str(root / "teachers" / "seed-0.tsv") in inputs
    # No benchmark files yet (results made before the directives): an empty table, not a failure.
    (tmp_path / "empty").mkdir()
    assert main(["report", "timings", str(tmp_path / "empty"), "--csv", str(tmp_path / "e.csv")]) == 0
    assert pd.read_csv(tmp_path / "e.csv").columns.tolist()[:3] == ["rule", "jobs", "total s"]
    # Bad input: one line, nothing written.
    write_benchmark(root / "students" / "x" / "seed-0.tsv", "soon")
    assert main([*argv[:-4], "--csv", str(tmp_path / "bad.csv")]) == 2
    assert "holds something other than seconds" in capsys.readouterr().err and not (tmp_path / "bad.csv").exists()
    assert main(["report", "timings", str(tmp_path / "none"), "--csv", str(tmp_path / "n.csv")]) == 2
    assert main(["report", "timings", str(root), "--rule", "a b=x", "--csv", str(tmp_path / "n.csv")]) == 2
    assert "RULE=PATTERN" in capsys.readouterr().err


def test_fisher_vs_error_shows_the_correlation_tables_values(tmp_path, capsys):
    """The figure reads rho and tau from correlation.csv: an edit of the table (resealed) shows in
    the figure, and without --correlation the figure is refused."""
    from blockswap.cli import main

    n = 8
    errors = np.linspace(10, 20, n)
    rows = [
        student_row(
            "random", f"random-217000-{i}", "wrn-16-1", None, 0, errors[i], budget=217000, candidate=i, dataset="digits"
        )
        for i in range(n)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "students.csv", index=False)
    pd.DataFrame(
        {
            "candidate": range(n),
            "fisher": -errors,
            "params": np.arange(n) * 1000 + 50_000,
            "macs": np.arange(n) * 90_000 + 4_000_000,
        }
    ).to_csv(tmp_path / "p.csv", index=False)
    csv = tmp_path / "correlation.csv"
    assert (
        main(
            [
                "report",
                "correlation",
                str(tmp_path / "students.csv"),
                "--proxies",
                f"217000={tmp_path}/p.csv",
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    titles = []
    real_save = figures.save

    def keep(fig, out):
        titles.append(fig.axes[0].get_title())
        real_save(fig, out)

    figure = [
        "figure",
        "fisher_vs_error",
        str(tmp_path / "students.csv"),
        "--proxies",
        f"217000={tmp_path}/p.csv",
        "--correlation",
        str(csv),
        "--out",
        str(tmp_path / "f.png"),
    ]
    figures.save = keep
    try:
        assert main(figure) == 0
        table = pd.read_csv(csv)
        fisher = (table["proxy"] == "fisher") & (table["minibatches"] == 1)
        table.loc[fisher, ["spearman", "kendall"]] = [-0.123, -0.456]
        table.to_csv(csv, index=False)
        assert main(figure) == 2  # an edit not yet accepted is refused, not drawn
        assert main(["reseal", str(csv)]) == 0
        assert main(figure) == 0
    finally:
        figures.save = real_save
    assert titles == ["217K: rho -1.00, tau -1.00", "217K: rho -0.12, tau -0.46"]
    assert main(figure[:-4] + ["--out", str(tmp_path / "g.png")]) == 2
    assert "needs --correlation" in capsys.readouterr().err
    table.loc[fisher, "budget"] = 1
    table.to_csv(csv, index=False)
    main(["reseal", str(csv)])
    assert main(figure) == 2 and "no Fisher row (k = 1) for budget 217000" in capsys.readouterr().err
