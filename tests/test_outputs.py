"""What each workflow target makes (blockswap.planning.outputs): one test per policy, pinning the
files a configuration asks for, in the order the rules hand them to their commands."""

import copy

import pytest
from helpers import ROOT

from blockswap.planning import outputs
from blockswap.planning.config_file import load_config
from blockswap.planning.plan import RELEASED_GENOTYPES, plan_networks

R = "results/default"


def load(*names):
    return load_config([ROOT / "config" / name for name in names])


@pytest.fixture(scope="module")
def default():
    return load("config.yaml")


@pytest.fixture(scope="module")
def plans(default):
    return plan_networks(default, RELEASED_GENOTYPES, R)


def changed(config, **sections):
    config = copy.deepcopy(config)
    for section, values in sections.items():
        config[section].update(values)
    return config


def test_costed_leaves_out_pruned_picked_and_compared_networks(plans):
    assert outputs.costed(plans) == [
        "teacher",
        "blockswap-60000",
        "blockswap-150000",
        "reduced-wrn-16-1",
        "moonshine-bg2-m4",
        "moonshine-b2",
    ]


def test_paper_tables(default):
    assert outputs.paper_tables(default, "R") == [
        "R/tables/costs.csv",
        "R/tables/students.csv",
        "R/tables/table2.md",
        "R/tables/convergence.md",
        "R/tables/correlation.md",
        "R/tables/proxy_costs.md",
        "R/tables/ceiling.md",
        "R/tables/stability.md",
    ]
    no_ablation = changed(default, ablation={"random_students": 0, "student_seeds": None, "samples": [10]})
    assert outputs.paper_tables(no_ablation, "R") == [
        "R/tables/costs.csv",
        "R/tables/students.csv",
        "R/tables/table2.md",
        "R/tables/convergence.md",
        "R/tables/samples.md",
    ]
    assert outputs.paper_tables(load("paper-coco.yaml"), "R") == ["R/tables/table4.md"]


def test_paper_figures(default):
    assert outputs.paper_figures(default, "R") == [
        "R/figures/pareto.png",
        "R/figures/learning_curves.png",
        "R/figures/search_60000.png",
        "R/figures/search_150000.png",
        "R/figures/random_students.png",
        "R/figures/fisher_vs_error.png",
        "R/figures/forest.png",
        "R/figures/proxy_scatter.png",
    ]
    evolved = changed(default, search={"method": "evolution"})
    assert "R/figures/search_60000.png" not in outputs.paper_figures(evolved, "R")  # no scored candidates
    assert outputs.paper_figures(load("paper-coco.yaml"), "R") == []


def test_student_metrics(plans):
    assert outputs.student_metrics(plans, R, ["blockswap"]) == [
        f"{R}/students/blockswap-60000/seed-0/metrics.json",
        f"{R}/students/blockswap-60000/seed-1/metrics.json",
        f"{R}/students/blockswap-150000/seed-0/metrics.json",
        f"{R}/students/blockswap-150000/seed-1/metrics.json",
    ]


def test_score_shards(default):
    assert outputs.score_shards(default, "R") == [
        "R/search/{budget}/scores/shard-0.csv",
        "R/search/{budget}/scores/shard-1.csv",
    ]
    assert outputs.score_shards(default, "R", 60000)[1] == "R/search/60000/scores/shard-1.csv"


def test_stability_scorings(default):
    assert outputs.stability_seeds(default) == [1, 2, 3, 4, 5]
    assert outputs.stability_scorings(default, "R")[:2] == [
        ("60000", "R/ablation/60000/stability/seed-1.csv"),
        ("60000", "R/ablation/60000/stability/seed-2.csv"),
    ]


def test_search_results(default, plans):
    files = outputs.search_results(default, plans, R)
    assert files[:7] == [
        f"{R}/search/60000/candidates.csv",
        f"{R}/search/150000/candidates.csv",
        f"{R}/search/60000/scores/shard-0.csv",
        f"{R}/search/60000/scores/shard-1.csv",
        f"{R}/search/150000/scores/shard-0.csv",
        f"{R}/search/150000/scores/shard-1.csv",
        f"{R}/search/60000/student.json",
    ]
    assert files[-6:] == [f"{R}/ablation/60000/proxies.csv"] + [
        f"{R}/ablation/60000/stability/seed-{s}.csv" for s in range(1, 6)
    ]
    assert len(files) == 8 + 24 + 1 + 5  # 24 picked random students


def test_training_histories(default, plans):
    histories = outputs.training_histories(default, plans, R, None)
    assert histories[:3] == [
        f"{R}/teachers/seed-0/history.csv",
        f"{R}/teachers/seed-1/history.csv",
        f"{R}/students/blockswap-60000/seed-0/history.csv",
    ]
    assert outputs.training_histories(default, plans, R, "torchvision:resnet34:w.pth")[0].startswith(f"{R}/students/")


def test_search_histories(default):
    histories = outputs.search_histories(default, "R")
    assert histories[:2] == ["R/compare/60000/random/seed-0/history.csv", "R/compare/60000/random/seed-1/history.csv"]
    assert histories[5] == "R/compare/60000/evolution/seed-0/history.csv"
    assert len(histories) == 2 * 5


def test_comparison_outputs(default, plans):
    files = outputs.comparison_outputs(default, plans, R)
    assert files[10:12] == [f"{R}/tables/search_curves.md", f"{R}/figures/search_curves.png"]
    assert files[-2:] == [f"{R}/tables/search_winners.md", f"{R}/tables/bestof_seeds.md"]
    assert len(files) == 44
    off = changed(default, comparison={"seeds": [], "trained": 0, "bestof": []})
    assert outputs.comparison_outputs(off, plans, R) == []


def test_network_latency_files_measure_the_students_table_only(plans):
    files = outputs.network_latency_files(plans, R, None)
    assert files[:3] == [
        f"{R}/latency/networks/teacher/seed-0.json",
        f"{R}/latency/networks/teacher/seed-1.json",
        f"{R}/latency/networks/blockswap-60000/seed-0.json",
    ]
    assert len(files) == 60
    assert not [f for f in outputs.network_latency_files(plans, R, "torchvision:resnet34:w.pth") if "/teacher/" in f]


def test_latency_outputs(default, plans):
    assert outputs.latency_outputs(default, plans, R, None) == [f"{R}/latency/table.json", f"{R}/latency/check.csv"]
    assert outputs.students_latency_files(default, plans, R, None) == []
    enabled = changed(default, latency={"enabled": True})
    files = outputs.latency_outputs(enabled, plans, R, None)
    assert len(files) == 2 + 60 + 3
    assert files[-3:] == [
        f"{R}/tables/students.csv",
        f"{R}/figures/pareto_latency.png",
        f"{R}/tables/latency_ranks.csv",
    ]
    assert outputs.students_latency_files(enabled, plans, R, None) == files[2:62]


def test_detection_outputs():
    assert outputs.detection_outputs("R") == [
        "R/config.yaml",
        "R/detection/search/candidates.csv",
        "R/detection/search/student.json",
        "R/detection/resnet34-gn/metrics.json",
        "R/detection/blockswap/metrics.json",
        "R/tables/table4.csv",
        "R/tables/table4.md",
        "R/tables/table4.tex",
    ]


def test_final_outputs(default, plans):
    files = outputs.final_outputs(default, plans, R, None)
    assert files[:3] == [f"{R}/config.yaml", f"{R}/teachers/seed-0/metrics.json", f"{R}/teachers/seed-1/metrics.json"]
    assert files[-1] == f"{R}/tables/timings.csv"  # built after everything else
    assert len(files) == 116
    assert len(set(files)) == len(files)
    compared = changed(default, comparison={"in_all": True})
    assert len(outputs.final_outputs(compared, plans, R, None)) == 116 + 44
    coco = load("paper-coco.yaml")
    assert outputs.final_outputs(coco, {}, "R", None) == [*outputs.detection_outputs("R"), "R/tables/timings.csv"]
