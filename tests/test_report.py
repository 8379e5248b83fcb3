"""Tables and figures from result files: Table 2 layout with the paper's values, Table 1 statistics."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import GENOTYPES

from blockswap import BlockswapError, Genotype, NetworkSpec
from blockswap.results import figures
from blockswap.results.proxy_tables import correlation_display, correlation_table
from blockswap.results.report import latex, markdown, table2, table2_display


def student_row(method, network, arch, genotype, seed, error, budget=None, candidate=None, dataset="cifar10"):
    cost = NetworkSpec.create(arch, genotype).cost((32, 32))
    return {"method": method, "network": network, "arch": arch, "genotype": str(NetworkSpec.create(arch, genotype).genotype),
            "budget": budget, "seed": seed, "params": cost.params, "macs": cost.macs, "ops": cost.ops,
            "test_error": error, "test_error_top5": 0.0, "fisher": None, "candidate": candidate, "dataset": dataset}


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
    assert list(table["method"]) == ["teacher", "reduced", "moonshine", "quoted", "quoted", "blockswap"]
    quoted = table[table["method"] == "quoted"]
    # Rows from other papers: the paper's numbers and their source, nothing of ours.
    assert list(quoted["network"]) == ["DARTS cell", "CondenseNet"] and quoted["error mean"].isna().all()
    assert list(quoted["paper error"]) == ["4.49 +- 0.03", "4.95 +- 0.05"]
    assert quoted["note"].str.contains("quoted by the paper").all()
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
    assert "paper error" not in table and "quoted" not in set(table["method"])


def test_snip_rows_match_the_paper_by_size_and_notes_become_rows(students):
    snip = [student_row("snip", "snip-217000", "wrn-40-2", None, seed, e, budget=217000) for seed, e in
            enumerate([5.4, 5.6, 5.5])]
    for row in snip:
        row["params"] = 217050  # what remains after pruning to the released student's size
    table = table2(pd.concat([students, pd.DataFrame(snip)], ignore_index=True), ["no Moonshine network near 1"])
    row = table[table["method"] == "snip"].iloc[0]
    assert row["paper P (K)"] == 217.0 and row["paper error"] == "5.53" and pd.isna(row["paper Ops (M)"])
    assert table.iloc[-1]["method"] == "note" and table.iloc[-1]["note"] == "no Moonshine network near 1"
    assert "no Moonshine network near 1" in markdown(table2_display(table))


def imagenet_row(method, network, genotype, error, top5, budget=None):
    row = student_row(method, network, "resnet-34" if method != "reduced" else "resnet-18", genotype, 0, error,
                      budget=budget, dataset="imagenet")
    cost = NetworkSpec.create(row["arch"], genotype, 1000).cost((224, 224))
    return {**row, "params": cost.params, "macs": cost.macs, "ops": cost.ops, "test_error_top5": top5}


def test_table3_layout_and_the_papers_values():
    from blockswap.results.report import table3

    small = Genotype.load(GENOTYPES / "blockswap-imagenet-3.1m.yaml")
    students = pd.DataFrame([
        imagenet_row("teacher", "teacher", None, 27.0, 9.0),
        imagenet_row("reduced", "reduced-resnet-18", None, 30.0, 11.0),
        imagenet_row("moonshine", "moonshine-gn", "G(N)", 31.0, 11.5),
        imagenet_row("blockswap", "blockswap-3100000", small, 30.5, 11.2, budget=3100000),
    ])
    table = table3(students)
    assert list(table["method"]) == ["teacher", "reduced", "moonshine", "blockswap", "note"]
    blockswap = table[table["method"] == "blockswap"].iloc[0]
    assert (blockswap["P (M)"], blockswap["Ops (G)"]) == (3.08, 0.812)  # docs/paper.md s.8
    assert (table.iloc[0]["P (M)"], table.iloc[0]["Ops (G)"]) == (21.79, 3.669)  # the paper: 21.8M, 3.669G
    assert (blockswap["paper top-1"], blockswap["paper top-5"]) == (29.57, 10.20)
    moonshine = table[table["method"] == "moonshine"].iloc[0]
    assert (moonshine["paper P (M)"], moonshine["paper top-1"]) == (3.1, 30.16)
    assert table.iloc[-1]["note"].startswith("ResNet-18-0.5")


def test_samples_table_with_the_single_blocktype_reference(students):
    from blockswap.results.report import samples_table

    rows = []
    for n, errors in ((10, (4.9, 4.8)), (1000, (4.2, 4.3))):
        for seed, e in enumerate(errors):
            rows.append(student_row("bestof", f"bestof-{n}", "wrn-40-2", "G(16)", seed, e, budget=404200, candidate=3))
    table = samples_table(pd.concat([students, pd.DataFrame(rows)], ignore_index=True))
    assert table["samples"].tolist()[:2] == [10, 1000] and table["n"].tolist() == [2, 2, 3]
    assert table["error mean"].tolist()[:2] == [4.85, 4.25]
    assert table["paper error"].tolist() == [4.85, 4.21, 4.45]
    assert table.iloc[-1]["network"] == "moonshine-bg2-4" and "closest to the 404200 budget" in table.iloc[-1]["note"]
    with pytest.raises(BlockswapError, match="no best-of-N students"):
        samples_table(students)


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
    rows = [student_row("random", f"random-217000-{i}", "wrn-16-1", None, seed, errors[i] + 0.01 * seed,
                        budget=217000, candidate=i, dataset="digits") for i in range(n) for seed in (0, 1)]
    students = pd.DataFrame(rows)
    proxies = pd.DataFrame({
        "candidate": range(n),
        "fisher": -errors,  # perfectly anti-monotone: rho = -1
        "accuracy@5": rng.permutation(n).astype(float),
        "params": np.arange(n) * 1000 + 50_000,  # whole numbers, monotone in the error: rho = +1
        "macs": np.arange(n) * 90_000 + 4_000_000,
    })
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
    assert main(["report", "table2", str(tmp_path / "students.csv"), "--csv", str(csv), "--md", str(md),
                 "--tex", str(tex)]) == 0
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
    from blockswap.results.paper import table1_match

    assert table1_match("fisher", 400_000, 10, "cifar10") == -0.667
    assert table1_match("grad_norm", "800000", 100, "cifar10") == 0.558
    assert table1_match("fisher", 400_000, 5, "cifar10") is None  # not a k the paper measured
    assert table1_match("fisher", 300_000, 1, "cifar10") is None and table1_match("fisher", 400_000, 1, "digits") is None
    assert table1_match("synflow", 400_000, 1, "cifar10") is None and table1_match("fisher", "pooled", 1, "cifar10") is None


def test_markdown_escapes_pipes_so_columns_stay_columns():
    md = markdown(pd.DataFrame({"partial tau | params": ["+0.1 | x"], "n": [3]}))
    assert [line.count("|") - line.count("\\|") for line in md.splitlines()] == [3, 3, 3]
