"""The Snakemake workflow: lint, dry runs of the paper configs, a real tiny run."""

import json
import os

import pandas as pd
import pytest
import yaml
from helpers import ROOT, TINY, copy_run, snakemake, workflow_config_error
from snakemake_log import job_counts

from blockswap.cli import main

pytestmark = pytest.mark.slow  # real Snakemake runs and dry runs


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "configfile,expected",
    [
        # 2 budgets x 2 shards; 2 seeds x (2 BlockSwap + 1 reduced + 2 Moonshine); the 24 random students
        # of the one ablation budget under 2 student seeds, all 24 of a seed in one lockstep job; their
        # candidates scored again under 5 seeds; one pick job. The paper configs: tests/test_paper_configs.py.
        (
            "config/config.yaml",
            {
                "train_teacher": 2,
                "score": 4,
                "select": 2,
                "train_student": 10,
                "lockstep_60000_0": 2,
                "proxies": 1,
                "proxies_reseeded": 5,
                "pick_random": 1,
            },
        ),
    ],
)
def test_dry_runs_list_every_job(tmp_path, configfile, expected):
    proc = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / configfile))
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    for job, n in expected.items():
        assert counts.get(job, 0) == n, (job, counts)


# tiny_run (conftest.py): the tiny config run end to end once; tests below inspect it, and poke
# copies of it.


def test_tiny_run_produces_every_output(tiny_run, capsys):
    results = tiny_run / "results" / "tiny"
    students = pd.read_csv(results / "tables" / "students.csv")
    assert set(students["method"]) == {"teacher", "blockswap", "moonshine", "reduced", "random"}
    assert students["test_error"].between(0, 100).all() and students["test_error_top5"].between(0, 100).all()
    assert (
        students.groupby("network")["seed"].apply(sorted)
        == pd.Series([[0, 1]] * students["network"].nunique(), index=sorted(students["network"].unique()))
    ).all()
    for budget in (30000, 45000):
        rows = students[(students["method"] == "blockswap") & (students["budget"] == budget)]
        assert len(rows) == 2 and rows["fisher"].notna().all()
        assert len(students[(students["method"] == "random") & (students["budget"] == budget)]) == 6
        student = json.loads((results / "search" / str(budget) / "student.json").read_text())
        assert rows["genotype"].iloc[0] == " ".join(student["genotype"])
    for row in students.drop_duplicates("network").itertuples():
        argv = ["cost", "--arch", row.arch, "--genotype", row.genotype, "--dataset", "digits", "--image-size", "8"]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["params"] == row.params
    table2 = pd.read_csv(results / "tables" / "table2.csv")
    assert set(table2["method"]) == {"teacher", "blockswap", "moonshine", "reduced"} and (table2["n"] == 2).all()
    assert "error (%)" in (results / "tables" / "table2.md").read_text()
    assert (results / "tables" / "table2.tex").read_text().startswith("\\begin{tabular}")
    correlation = pd.read_csv(results / "tables" / "correlation.csv")
    assert set(correlation["proxy"]) == {"fisher", "accuracy", "params", "macs"}
    assert set(correlation["budget"].astype(str)) == {"30000", "45000", "pooled"}
    assert set(correlation.groupby(correlation["budget"].astype(str))["n"].max()) == {3, 6}  # pooled: both budgets
    ceiling = pd.read_csv(results / "tables" / "ceiling.csv")
    assert set(ceiling["budget"].astype(str)) == {"30000", "45000", "pooled"} and (ceiling["seeds"] == 2).all()
    assert correlation["ceiling_tau"].notna().any()
    convergence = pd.read_csv(results / "tables" / "convergence.csv")
    assert convergence["runs"].sum() == len(students)
    # Random students trained two per job, from the first teacher, under student seeds 0 and 1.
    for i, together in ((0, 2), (1, 2), (2, 1)):
        for seed in (0, 1):
            metrics = json.loads(
                (results / "students" / f"random-30000-{i}" / f"seed-{seed}" / "metrics.json").read_text()
            )
            assert metrics["lockstep"] == together and metrics["teacher"].endswith("teachers/seed-0")
            assert metrics["seed"] == seed and metrics["final_train_loss"] > 0
    stability = pd.read_csv(results / "tables" / "stability.csv")
    assert set(stability["budget"]) == {30000, 45000} and (stability["seeds"] == 2).all()
    assert set(pd.read_csv(results / "tables" / "proxy_costs.csv")["proxy"]) >= {"fisher"}
    for name in (
        "pareto",
        "search_30000",
        "search_45000",
        "random_students",
        "fisher_vs_error",
        "forest",
        "proxy_scatter",
    ):
        for suffix in (".png", ".pdf"):
            assert (results / "figures" / f"{name}{suffix}").stat().st_size > 1000
    resolved = yaml.safe_load((results / "config.yaml").read_text())
    # Both files merged (the overlay's batch size, the default's learning rate), the schema's defaults applied.
    assert resolved["training"]["batch_size"] == 64 and resolved["training"]["lr"] == 0.05
    assert resolved["data_dir"] == "data" and resolved["training"]["gpus"] == 1
    summary = json.loads((results / "data" / "summary.json").read_text())
    assert summary["splits"] == {"train": 1077, "val": 360, "test": 360}
    assert (tiny_run / "benchmarks" / "tiny" / "search" / "30000" / "score-0.tsv").is_file()


def test_html_report(tiny_run):
    proc = snakemake("--report", "results/tiny/report.html", "--directory", str(tiny_run), "--configfile", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tiny_run / "results" / "tiny" / "report.html").read_text()
    assert "pareto.png" in html and "Fisher potential of every sampled candidate" in html


def test_rerun_after_completion_does_nothing(tiny_run):
    again = snakemake("--cores", "2", "all", "--directory", str(tiny_run), "--configfile", *TINY)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_editing_the_package_alone_triggers_no_rerun(tiny_run):
    source = ROOT / "src" / "blockswap" / "training" / "train.py"
    stat = source.stat()
    os.utime(source)  # as if edited
    try:
        proc = snakemake("-n", "all", "--directory", str(tiny_run), "--configfile", *TINY)
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleting_one_student_reruns_only_it_and_what_depends_on_it(tiny_run, tmp_path):
    tiny_run = copy_run(tiny_run, tmp_path / "run")
    student = tiny_run / "results" / "tiny" / "students" / "reduced-wrn-10-1" / "seed-1"
    for name in ("model.pt", "metrics.json", "history.csv"):
        (student / name).unlink()
    proc = snakemake("-n", "--directory", str(tiny_run), "--configfile", *TINY)
    counts = job_counts(proc.stdout)
    assert counts["train_student"] == 1 and "train_teacher" not in counts and "score" not in counts
    assert counts["students_table"] == counts["paper_table"] == 1
    # Retrained for real (the tables that follow are the dry run's: they regenerate in their own test).
    target = student.relative_to(tiny_run) / "metrics.json"
    rerun = snakemake("--cores", "2", target, "--directory", str(tiny_run), "--configfile", *TINY)
    assert rerun.returncode == 0 and (student / "metrics.json").is_file()
    assert job_counts(rerun.stdout + rerun.stderr)["train_student"] == 1


def test_deleting_a_student_trained_in_lockstep_reruns_its_group(tiny_run, tmp_path):
    tiny_run = copy_run(tiny_run, tmp_path / "run")
    student = tiny_run / "results" / "tiny" / "students" / "random-45000-1" / "seed-1"
    before = json.loads((student / "metrics.json").read_text())
    (student / "metrics.json").unlink()
    proc = snakemake("-n", "--directory", str(tiny_run), "--configfile", *TINY)
    counts = job_counts(proc.stdout)
    assert counts["lockstep_45000_0"] == 1 and "train_student" not in counts and "train_teacher" not in counts
    target = student.relative_to(tiny_run) / "metrics.json"  # its group's job retrains it
    rerun = snakemake("--cores", "2", target, "--directory", str(tiny_run), "--configfile", *TINY)
    assert rerun.returncode == 0
    assert json.loads((student / "metrics.json").read_text())["test_error"] == before["test_error"]


def test_deleting_a_search_result_rebuilds_it_and_what_depends_on_it(tiny_run, tmp_path):
    """A deleted selection is rebuilt by `all` (it is listed), and only its student follows."""
    tiny_run = copy_run(tiny_run, tmp_path / "run")
    selection = tiny_run / "results" / "tiny" / "search" / "30000" / "student.json"
    before = json.loads(selection.read_text())
    selection.unlink()
    proc = snakemake("-n", "--directory", str(tiny_run), "--configfile", *TINY)
    counts = job_counts(proc.stdout)
    assert counts["select"] == 1 and "score" not in counts and "sample" not in counts
    assert counts["train_student"] == 2  # blockswap-30000 from each of the two teachers
    # Rebuilt from the kept scores (the students' retraining is the lockstep test's real rerun).
    rerun = snakemake("--cores", "2", "results/tiny/search/30000/student.json", "--directory", tiny_run,
                      "--configfile", *TINY)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(selection.read_text())["genotype"] == before["genotype"]


def test_tables_and_figures_regenerate_without_retraining(tiny_run):
    proc = snakemake("-n", "--forcerun", "students_table", "--directory", str(tiny_run), "--configfile", *TINY)
    counts = job_counts(proc.stdout)
    assert counts["students_table"] == 1 and "train_student" not in counts and "train_teacher" not in counts
    assert counts["figure_from_students"] == 2


def test_single_target(tmp_path):
    proc = snakemake(
        "--cores", "1", "results/tiny/costs/teacher.json", "--directory", str(tmp_path), "--configfile", *TINY
    )
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in (tmp_path / "results" / "tiny" / "costs").iterdir())
    assert made == ["teacher.json", "teacher.json.provenance.json"]  # the file and its sealed provenance


def test_a_data_dir_that_looks_like_an_option_reaches_every_command(tmp_path):
    # A data folder named "-x" must be the value of --data-dir, not an option argparse refuses.
    proc = snakemake(
        "--cores", "1", "results/tiny/search/30000/candidates.csv", "results/tiny/costs/teacher.json",
        "--directory", str(tmp_path), "--configfile", *TINY, "--config", "data_dir=-x",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "results" / "tiny" / "search" / "30000" / "candidates.csv").is_file()


def test_one_stage_target_dry_run(tiny_search_dry_run):
    proc = tiny_search_dry_run  # `snakemake -n -p search` (conftest.py)
    counts = job_counts(proc.stdout)
    assert counts["select"] == 2 and counts["score"] == 6 and "train_student" not in counts


@pytest.mark.parametrize(
    "override,message",
    [
        ({"teacher": {"arch": "vgg-16"}}, "teacher.arch: 'vgg-16' does not match"),
        ({"dataset": "mnist"}, "dataset: 'mnist' is not one of"),
        ({"image_size": 2}, "image_size: 2 is less than the minimum of 4"),
        ({"colour": "blue"}, "Additional properties are not allowed ('colour' was unexpected)"),
        ({"seeds": [0, 0]}, "seeds: [0, 0] has non-unique elements"),
        # Beyond the schema: what the package itself can check before any job runs.
        ({"teacher": {"arch": "wrn-41-2"}}, "WRN depth must be 6n+4"),
        ({"search": {"budgets": [10]}}, "budget 10 params (+-10.0%) is outside what wrn-10-1 can reach"),
        ({"baselines": {"moonshine": ["X(3)"]}}, "unknown block type 'X(3)'"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, override, message):
    """The workflow's start-up in this process (the same line as `snakemake -n` prints, shown for each
    kind of error by tests/test_config_checks.py)."""
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    error = workflow_config_error(*TINY, tmp_path / "override.yaml")
    assert error is not None and error.count("\n") == 0, error
    assert error.startswith("blockswap: config error:") and message in error, error
