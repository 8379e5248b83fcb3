"""Every shipped configuration runs end to end, unchanged but for a scale-down overlay.

Each `config/*.yaml` is run by Snakemake with its `tests/miniature/<name>.yaml` overlay as a second
`--configfile` (one epoch, a few candidates and random students, one seed) on tiny datasets written
in the originals' on-disk formats (CIFAR-10 and CIFAR-100 pickled batches, SVHN .mat files, an
ImageNet tree of JPEGs with 1000 synset folders) and a stand-in for torchvision's ResNet-34 weight
file in a torch hub cache. Every table and figure the README lists for the configuration must be
made, with the rows the configuration's design implies.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import CORES, MINIATURE, ROOT, run_miniature, snakemake
from snakemake_log import job_counts

from blockswap.provenance import read_sidecar

CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


pytestmark = pytest.mark.slow  # Snakemake dry runs of the paper configs

# conftest.py: tiny_data (all datasets in one data folder, and a torch hub cache holding the
# ResNet-34 weight file) and miniature(name) (config/<name> run end to end in miniature, once a session).


def test_every_shipped_configuration_has_a_miniature():
    assert CONFIGS == sorted(p.name for p in MINIATURE.glob("*.yaml"))


def rows(results: Path, table: str) -> pd.DataFrame:
    frame = pd.read_csv(results / "tables" / f"{table}.csv")
    for suffix in (".md", ".tex"):
        if (results / "tables" / f"{table}{suffix}").exists():
            assert (results / "tables" / f"{table}{suffix}").stat().st_size > 100
    return frame


def count(frame: pd.DataFrame, column: str = "method") -> dict:
    return frame[column].value_counts().to_dict()


def check_default(results: Path) -> None:
    # The default's design at the tiny run's scale (tests/miniature/config.yaml); test_workflow.py
    # reads the same run in detail. Two teachers; per budget one searched BlockSwap student, the
    # Moonshine networks within the tolerance, 3 random students under student seeds 0 and 1.
    students = rows(results, "students")
    counts = count(students)
    assert {k: counts[k] for k in ("teacher", "blockswap", "reduced", "random")} == {
        "teacher": 2,
        "blockswap": 4,
        "reduced": 2,
        "random": 12,
    }
    assert students.loc[students["method"] == "blockswap", "fisher"].notna().all()
    assert students.loc[students["method"] == "random", "candidate"].notna().all()
    correlation = rows(results, "correlation")
    # 2 budgets and the pooled rows x (the overlay's 2 proxies after 1 and 2 minibatches + params, MACs).
    assert len(correlation) == 3 * (2 * 2 + 2)
    assert (correlation["seeds"] == 2).all() and correlation["seed_tau"].notna().all()
    assert rows(results, "stability")["seeds"].eq(2).all()
    assert rows(results, "ceiling")["n"].tolist() == [3, 3, 6]
    assert set(rows(results, "proxy_costs")["proxy"]) == {"fisher"}  # accuracy is read in the Fisher pass


def check_shootout(results: Path) -> None:
    students = rows(results, "students")
    # The BlockSwap student of the overlay's one search budget; 3 random students of the ablation
    # budget under student seeds 0 and 1, all from the one teacher.
    assert count(students) == {"teacher": 1, "blockswap": 1, "random": 6}
    random = students[students["method"] == "random"]
    assert (random.groupby("network")["seed"].apply(sorted).apply(tuple) == (0, 1)).all()
    ceiling = rows(results, "ceiling")
    assert ceiling["budget"].astype(str).tolist() == ["60000"] and ceiling["n"].tolist() == [3]
    correlation = rows(results, "correlation")
    assert correlation["seed_tau"].notna().all() and (correlation["seeds"] == 2).all()
    convergence = rows(results, "convergence")
    assert convergence["runs"].sum() == len(students)


def check_paper_cifar10(results: Path) -> None:
    students = rows(results, "students")
    assert count(students) == {
        "teacher": 1,
        "blockswap": 6,
        "reduced": 3,
        "moonshine": 4,  # the overlay's
        "snip": 6,
        "bestof": 2,
        "random": 6,
    }
    # SNIP keeps exactly its budget (Table 2's printed size), as the authors' SNIP script does.
    snip = students[students["method"] == "snip"]
    assert snip["params"].astype(int).tolist() == snip["budget"].astype(int).tolist() and len(snip) == 6
    table2 = rows(results, "table2")
    assert count(table2) == {"teacher": 1, "reduced": 3, "moonshine": 4, "paper-only": 2, "snip": 6, "blockswap": 6}
    assert table2["paper error"].notna().sum() == 1 + 3 + 1 + 2 + 6 + 6  # MBConv(6) is the one paper Moonshine row
    samples = rows(results, "samples")
    assert samples["samples"].dropna().tolist() == [2, 4] and len(samples) == 3  # + the single-blocktype reference
    correlation = rows(results, "correlation")
    assert sorted(correlation["budget"].astype(str).unique()) == ["200000", "400000", "800000", "pooled"]
    proxies = yaml.safe_load((ROOT / "config" / "paper-cifar10.yaml").read_text())["ablation"]["proxies"]
    # 3 budgets and the pooled rows x (every proxy after 1 and 2 minibatches + params, MACs).
    assert len(correlation) == 4 * (len(proxies) * 2 + 2)
    assert set(correlation.groupby(correlation["budget"].astype(str))["n"].max()) == {2, 6}
    assert correlation["paper_spearman"].notna().sum() == 3 * 4  # Table 1's four metrics at k = 1 per budget
    # Guided search (overlay: one budget, 2 search seeds of 4 evaluations, the first seed's winners trained).
    curves = rows(results, "search_curves")
    assert curves["evaluations"].tolist() == [1, 2, 4] and (curves["random n"] == 2).all()
    # Both methods start from the same random networks (a population of 2 of the 4 evaluations).
    first = curves[curves["evaluations"] <= 2]
    assert first["random mean"].tolist() == first["evolution mean"].tolist()
    assert (curves["evolution n"] == 2).all() and (curves["paired seeds"] == 2).all()
    winners = rows(results, "search_winners")
    assert sorted(winners["method"]) == ["evolution", "randomsearch"] and (winners["n"] == 1).all()
    assert rows(results, "bestof_seeds")["samples"].tolist() == [2]


def check_paper_imagenet(results: Path) -> None:
    students = rows(results, "students")
    assert count(students) == {"teacher": 1, "blockswap": 2, "reduced": 1, "moonshine": 2}
    teacher = json.loads((results / "teachers" / "seed-0" / "metrics.json").read_text())
    assert teacher["mode"] == "pretrained" and teacher["params"] == 21_797_672  # torchvision's ResNet-34
    table3 = rows(results, "table3")
    assert count(table3) == {"teacher": 1, "reduced": 1, "moonshine": 2, "blockswap": 2, "note": 1}
    assert table3["paper top-1"].notna().sum() == 6 and table3["paper top-5"].notna().sum() == 6


def check_paper_coco(results: Path) -> None:
    table4 = rows(results, "table4")
    assert table4["method"].tolist() == ["moonshine", "blockswap"]  # ResNet34-G(N), then BlockSwap
    for prefix in ("box", "mask", "paper"):
        aps = table4[[f"{prefix} {name}" for name in ("AP", "AP50", "AP75", "APS", "APM", "APL")]]
        assert aps.notna().all().all() and ((aps >= 0) & (aps <= 100)).all().all(), prefix
    # Both backbones lie in the search band around the reference backbone's parameter count.
    params = table4.set_index("method")["backbone params"]
    assert abs(params["blockswap"] / params["moonshine"] - 1) < 0.025
    student = json.loads((results / "detection" / "search" / "student.json").read_text())
    for backbone in ("resnet34-gn", "blockswap"):  # the overlay's train_limit reached both trainings
        trained = json.loads((results / "detection" / backbone / "train.json").read_text())
        assert trained["provenance"]["config"]["limit"] == 6 and trained["provenance"]["config"]["arch"] == "resnet-34"
    assert " ".join(student["genotype"]) == table4.set_index("method").loc["blockswap", "genotype"]


def check_own_network(results: Path) -> None:
    students = rows(results, "students")
    assert count(students) == {"teacher": 1, "blockswap": 1}
    teacher = json.loads((results / "teachers" / "seed-0" / "metrics.json").read_text())
    # The user's 3-class torchvision ResNet-50, counted by FlopCounterMode, fed its own normalisation.
    assert teacher["mode"] == "pretrained" and teacher["params"] == 23_514_179
    assert teacher["pretrained"]["num_classes"] == 3 and teacher["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    # Candidates keep the teacher's first section (teacher.keep: layer1, three Bottlenecks) and were
    # scored on inputs normalised as the students are trained: the teacher's normalisation.
    candidates = read_sidecar(results / "search" / "8000000" / "candidates.csv")
    assert candidates["kept"] == {"0": "T(4)", "1": "T(4)", "2": "T(4)"}
    scores = read_sidecar(results / "search" / "8000000" / "scores" / "shard-0.csv")
    assert scores["settings"]["mean"] == teacher["normalisation"]["mean"]
    assert scores["settings"]["std"] == teacher["normalisation"]["std"]
    run = next((results / "students").glob("blockswap-*/seed-0"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["genotype"][:3] == ["T(4)"] * 3 and metrics["arch"] == "resnet-50"
    # The stem and the kept blocks start from the teacher's weights.
    assert metrics["inherited"] == ["conv1", "bn1", "layer1.0", "layer1.1", "layer1.2"]
    assert metrics["normalisation"] == teacher["normalisation"]
    assert 8e6 * 0.975 < metrics["params"] < 8e6 * 1.025


# Configuration -> (tables, figures the README lists for it, the row checks).
EXPECTED = {
    "config.yaml": (
        ["costs", "students", "table2", "correlation", "stability", "proxy_costs", "ceiling", "convergence"],
        ["pareto", "search_30000", "search_45000", "random_students", "fisher_vs_error", "forest", "proxy_scatter"],
        check_default,
    ),
    "paper-cifar10.yaml": (
        [
            "costs",
            "students",
            "table2",
            "samples",
            "correlation",
            "stability",
            "proxy_costs",
            "search_curves",
            "search_winners",
            "bestof_seeds",
        ],
        ["pareto", "random_students", "fisher_vs_error", "forest", "proxy_scatter", "search_curves"],
        check_paper_cifar10,
    ),
    "paper-imagenet.yaml": (["costs", "students", "table3"], ["pareto"], check_paper_imagenet),
    "shootout.yaml": (
        ["costs", "students", "table2", "correlation", "stability", "proxy_costs", "ceiling", "convergence"],
        ["pareto", "random_students", "fisher_vs_error", "forest", "proxy_scatter", "learning_curves"],
        check_shootout,
    ),
    "paper-coco.yaml": (["table4"], [], check_paper_coco),
    "own-network.yaml": (["costs", "students", "table2"], ["pareto"], check_own_network),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configuration_runs_end_to_end_in_miniature(name, tiny_data, miniature):
    assert name in EXPECTED, f"add the expected outputs of config/{name} to this test"
    workdir = miniature(name)
    merged = {}  # the run name may come from the overlay
    for path in (ROOT / "config" / name, MINIATURE / name):
        merged.update(yaml.safe_load(path.read_text()))
    results = workdir / "results" / merged["run"]
    tables, figures, check = EXPECTED[name]
    for table in tables:
        assert (results / "tables" / f"{table}.csv").stat().st_size > 0, table
        assert (results / "tables" / f"{table}.csv.provenance.json").is_file(), table
    for figure in figures:
        for suffix in (".png", ".pdf"):
            assert (results / "figures" / f"{figure}{suffix}").stat().st_size > 1000, figure
    check(results)
    # Nothing is left to do: every input of every rule was declared, so a rerun finds no job.
    again = run_miniature(name, tiny_data, workdir, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]


def test_own_network_with_a_basic_block_teacher_runs_end_to_end(tiny_data, tmp_path):
    """config/own-network.yaml with a user's ResNet-18 (basic blocks) in place of its ResNet-50,
    keeping the teacher's first block."""
    root, torch_home = tiny_data
    own = root / "own-network"
    proc = snakemake(
        "--directory", tmp_path, "--cores", CORES, "all",
        "--configfile", ROOT / "config" / "own-network.yaml", MINIATURE / "own-network.yaml",
        MINIATURE / "variants" / "own-network-resnet-18.yaml",
        "--config", f"data_dir={own / 'images'}", f"teacher={{weights: {own / 'resnet18.pth'}}}",
        env={"TORCH_HOME": str(torch_home)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = tmp_path / "results" / "own-network"
    teacher = json.loads((results / "teachers" / "seed-0" / "metrics.json").read_text())
    assert teacher["params"] == 11_178_051 and teacher["pretrained"]["num_classes"] == 3  # torchvision's count
    assert read_sidecar(results / "search" / "3000000" / "candidates.csv")["kept"] == {"0": "T"}
    run = next((results / "students").glob("blockswap-*/seed-0"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["arch"] == "resnet-18" and metrics["genotype"][0] == "T" and "T" not in metrics["genotype"][1:]
    assert metrics["inherited"] == ["conv1", "bn1", "layer1.0"]
    assert metrics["normalisation"] == teacher["normalisation"]
    assert 3e6 * 0.975 < metrics["params"] < 3e6 * 1.025
    assert (results / "tables" / "table2.csv").stat().st_size > 0


# Paper-design job counts (dry runs, full scale): the ablation trains 100 random students at each
# of 3 budgets once (300 runs, as in the paper, where 1,800 were trained before).
@pytest.mark.parametrize(
    "name,expected",
    [
        # + the guided-search comparison (config comparison:): 3 budgets x 3 trained search seeds x
        # (random and evolution winners + 4 best-of-N) students from teacher 0; 3 budgets x 2 methods x 5 seeds
        # search histories. One pick job per ablation budget; the shoot-out's stability scorings: 5 per budget.
        (
            "paper-cifar10.yaml",
            {
                "train_teacher": 3,
                "train_student": 3 * (6 + 3 + 21 + 6 + 3) + 3 * 3 * (2 + 4),  # best-of-N from every teacher
                "lockstep_*": 3 * 4,  # the 300 random students, 25 per job
                "pick_random": 3,
                "proxies": 3,
                "proxies_reseeded": 3 * 5,
                "select_first": 3,
                "score": 8,
                "search_history": 3 * 2 * 5,
                "history_winner": 3 * 3 * 2,
                "history_bestof": 3 * 3 * 4,
            },
        ),
        ("paper-imagenet.yaml", {"pretrained_teacher": 1, "train_student": 5}),
        (
            "paper-coco.yaml",
            {
                "detection_search": 1,
                "detection_train": 2,
                "detection_evaluate": 2,
                "detection_table": 1,
                "train_teacher": 0,
                "train_student": 0,
            },
        ),
    ],
)
def test_paper_job_counts_follow_the_paper_design(name, expected, tiny_data, tmp_path):
    _, torch_home = tiny_data  # the ImageNet config reads the teacher's weight file from the hub cache
    config = ROOT / "config" / name
    proc = snakemake("--directory", tmp_path, "-n", "all", "--configfile", config, env={"TORCH_HOME": str(torch_home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = job_counts(proc.stdout)
    for job, n in expected.items():
        found = sum(v for k, v in counts.items() if k.startswith(job[:-1])) if job.endswith("*") else counts.get(job, 0)
        assert found == n, (job, counts)


@pytest.mark.parametrize("name", ["paper-cifar10.yaml", "paper-imagenet.yaml"])
def test_paper_configs_inherit_none_of_the_defaults_demo_settings(name):
    """Snakemake reads config/config.yaml first and the paper config over it: every key the bundled
    default sets for speed must be set back to the paper's protocol."""
    from blockswap.planning.config_file import load_config

    config = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / name])
    assert config["teacher"]["epochs"] is None and config["training"]["channels_last"] is False
    assert config["ablation"]["stability_candidates"] is None
    assert config["training"]["epochs"] == {"paper-cifar10.yaml": 200, "paper-imagenet.yaml": 100}[name]
    assert config["training"]["batch_size"] == {"paper-cifar10.yaml": 128, "paper-imagenet.yaml": 256}[name]
    assert config["training"]["lr"] == 0.1 and config["training"]["cutout"] == (name == "paper-cifar10.yaml")
    assert config["ablation"]["student_seeds"] is None and config["ablation"]["budgets"] != [60000]
