"""The Snakemake workflow: lint, formatting, dry runs of the paper configs, a real tiny run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def snakemake(*args, cwd=ROOT):
    return subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
    )


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_check():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "."], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def job_counts(output: str) -> dict:
    lines = output.split("Job stats:")[1].strip().splitlines()[2:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize(
    "configfile,costs,budgets,shards",
    [
        ("config/config.yaml", 6, 3, 2),
        ("config/paper-cifar10.yaml", 32, 6, 8),  # 1 teacher + 3 reduced + 21 Moonshine + 7 released
        ("config/paper-imagenet.yaml", 6, 2, 8),
    ],
)
def test_dry_runs_list_every_job(tmp_path, configfile, costs, budgets, shards):
    proc = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / configfile))
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["cost"] == costs
    assert counts["sample"] == counts["select"] == budgets and counts["score"] == budgets * shards
    assert counts["data"] == counts["cost_table"] == counts["resolved_config"] == 1


def test_tiny_run_end_to_end_then_nothing_to_do(tmp_path):
    config = str(ROOT / "tests" / "config.yaml")
    proc = snakemake("--cores", "2", "all", "--directory", str(tmp_path), "--configfile", config)
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "results" / "tiny"
    table = pd.read_csv(results / "tables" / "costs.csv")
    assert list(table["name"]) == ["teacher", "reduced-wrn-10-1", "moonshine-g4"]
    moonshine = json.loads((results / "costs" / "moonshine-g4.json").read_text())
    assert moonshine["genotype"] == ["G(4)"] * 3 and moonshine["input_size"] == [8, 8]
    assert "code_version" in moonshine["provenance"]
    direct = subprocess.run(
        [str(BIN / "blockswap"), "cost", "--arch", "wrn-10-1", "--genotype", "G(4)", "--dataset", "digits", "--image-size", "8"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert json.loads(direct.stdout)["params"] == table.loc[2, "params"]
    resolved = yaml.safe_load((results / "config.yaml").read_text())
    assert resolved["data_dir"] == "data" and resolved["download"] is False  # defaults applied
    summary = json.loads((results / "data" / "summary.json").read_text())
    assert summary["splits"] == {"train": 1077, "val": 360, "test": 360}
    for budget in (30000, 45000):
        search = results / "search" / str(budget)
        candidates = pd.read_csv(search / "candidates.csv")
        assert len(candidates) == 12 and ((candidates["params"] - budget).abs() < 0.1 * budget).all()
        shards = pd.concat(pd.read_csv(search / "scores" / f"shard-{i}.csv") for i in range(3))
        assert sorted(shards["candidate"]) == list(range(12))
        student = json.loads((search / "student.json").read_text())
        assert student["fisher"] == shards["fisher"].max() and student["candidates"] == 12
        assert (tmp_path / "benchmarks" / "tiny" / "search" / str(budget) / "score-0.tsv").is_file()
    again = snakemake("--cores", "2", "all", "--directory", str(tmp_path), "--configfile", config)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_single_target(tmp_path):
    config = str(ROOT / "tests" / "config.yaml")
    proc = snakemake("--cores", "1", "results/tiny/costs/teacher.json", "--directory", str(tmp_path), "--configfile", config)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "results" / "tiny" / "costs").iterdir()) == ["teacher.json"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("teacher={arch: vgg-16}", "'vgg-16' does not match"),
        ("dataset=mnist", "'mnist' is not one of"),
        ("image_size=2", "2 is less than the minimum of 4"),
        ("colour=blue", "Additional properties are not allowed ('colour' was unexpected)"),
    ],
)
def test_bad_config_is_rejected_by_the_schema(tmp_path, override, message):
    proc = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / "tests" / "config.yaml"), "--config", override)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
