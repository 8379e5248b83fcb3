"""What a workflow run makes, file by file: the output policy of every target (`all`, the stage
targets, the tables and figures a configuration asks for), as plain functions of the configuration,
the plan of its networks (`plans`), its results folder (`results/<run>`) and its pretrained
teacher (None when teachers are trained). rules/*.smk turn these lists into inputs; pytest pins them.
"""

from __future__ import annotations

from pathlib import Path

from .budgets import (
    ablation_budgets,
    comparison_budgets,
    comparison_trained_seeds,
    random_student_seeds,
    sampled_budgets,
    scored_budgets,
)
from .plan import COMPARISON_METHODS, STUDENT_METHODS, NetworkPlan

Plans = dict[str, NetworkPlan]

# Table 4 (dataset coco): the folder of each backbone under detection/, and the row it makes.
DETECTION_ROWS = {"resnet34-gn": "moonshine", "blockswap": "blockswap"}
COMPARED_SEARCHES = ("random", "evolution")  # the searches of the guided-search comparison


def is_detection(config: dict) -> bool:
    """Table 4 (dataset coco) runs rules/detection.smk and has no classification plan."""
    return config["dataset"] == "coco"


def evolved(config: dict) -> bool:
    """Whether each budget's student is the winner of an evolution history (else of the scored candidates)."""
    return config["search"]["method"] == "evolution"


def searched_budgets(config: dict) -> list[str]:
    """Budgets with a searched student.json (none when the released genotypes are trained)."""
    return [] if config["search"]["use_released_genotypes"] else [str(b) for b in config["search"]["budgets"]]


def students(plans: Plans) -> list[str]:
    return [name for name, plan in plans.items() if plan.method != "teacher"]


def costed(plans: Plans) -> list[str]:
    """Networks with dense costs: the rows of the costs table (pruned, picked and compared ones are not)."""
    return [
        name for name, plan in plans.items() if plan.method not in ("random", "bestof", "snip", *COMPARISON_METHODS)
    ]


def ceiling(config: dict) -> bool:
    """The noise ceiling needs every random student under two or more seeds."""
    return not is_detection(config) and len(random_student_seeds(config)[0]) >= 2


def teacher_metrics(config: dict, results: str) -> list[str]:
    return [f"{results}/teachers/seed-{seed}/metrics.json" for seed in config["seeds"]]


def student_metrics(plans: Plans, results: str, methods) -> list[str]:
    """metrics.json of every (network, seed) of these methods; each network has its own seeds."""
    return [
        f"{results}/students/{name}/seed-{seed}/metrics.json"
        for name in students(plans)
        if plans[name].method in methods
        for seed in plans[name].seeds
    ]


def score_shards(config: dict, results: str, budget="{budget}") -> list[str]:
    """Every score shard of one budget; by default the budget wildcard is left for the rule to fill."""
    return [f"{results}/search/{budget}/scores/shard-{i}.csv" for i in range(config["search"]["shards"])]


def proxy_files(config: dict, results: str) -> dict[str, str]:
    """The ablation's proxy scores (Table 1), by budget."""
    return {str(b): f"{results}/ablation/{b}/proxies.csv" for b in ablation_budgets(config)}


def stability_seeds(config: dict) -> list[int]:
    """Rank stability: the same candidates scored again under each of these scoring seeds."""
    return [config["search"]["seed"] + i for i in range(1, config["ablation"]["stability_seeds"] + 1)]


def stability_scorings(config: dict, results: str) -> list[tuple[str, str]]:
    """(budget, scores file) of every rescoring of the rank-stability table."""
    return [
        (str(b), f"{results}/ablation/{b}/stability/seed-{s}.csv")
        for b in ablation_budgets(config)
        for s in stability_seeds(config)
    ]


def paper_tables(config: dict, results: str) -> list[str]:
    """The paper's tables this configuration makes: Table 2 or 3, Table 1, the samples ablation; Table 4 (coco)."""
    if is_detection(config):
        return [f"{results}/tables/table4.md"]
    ablated = ablation_budgets(config)
    main = "table3" if config["dataset"] == "imagenet" else "table2"
    tables = [f"{results}/tables/costs.csv", f"{results}/tables/students.csv", f"{results}/tables/{main}.md"]
    tables += [f"{results}/tables/convergence.md"]
    tables += [f"{results}/tables/correlation.md", f"{results}/tables/proxy_costs.md"] if ablated else []
    tables += [f"{results}/tables/ceiling.md"] if ablated and ceiling(config) else []
    tables += [f"{results}/tables/stability.md"] if ablated and stability_seeds(config) else []
    return tables + ([f"{results}/tables/samples.md"] if config["ablation"]["samples"] else [])


def paper_figures(config: dict, results: str) -> list[str]:
    if is_detection(config):
        return []  # Table 4 has no figure
    figures = [f"{results}/figures/pareto.png", f"{results}/figures/learning_curves.png"]
    figures += [f"{results}/figures/search_{b}.png" for b in ([] if evolved(config) else searched_budgets(config))]
    if ablation_budgets(config):
        figures += [f"{results}/figures/random_students.png", f"{results}/figures/fisher_vs_error.png"]
        figures += [f"{results}/figures/forest.png", f"{results}/figures/proxy_scatter.png"]
    return figures


def training_histories(config: dict, plans: Plans, results: str, pretrained: str | None) -> list[str]:
    """history.csv of every network of the students table trained here (a pretrained teacher has none)."""
    teachers = [] if pretrained else [f"{results}/teachers/seed-{seed}/history.csv" for seed in config["seeds"]]
    return [
        *teachers,
        *(str(Path(p).with_name("history.csv")) for p in student_metrics(plans, results, STUDENT_METHODS)),
    ]


def timings_table(results: str) -> str:
    """Where the run's time went (rules/report.smk): built after everything else."""
    return f"{results}/tables/timings.csv"


def search_outputs(config: dict, results: str) -> list[str]:
    """What the `search` target makes: the selected student of every budget."""
    return [f"{results}/search/{b}/student.json" for b in config["search"]["budgets"]]


def ablation_outputs(config: dict, plans: Plans, results: str) -> list[str]:
    """What the `ablation` target makes: the random and best-of-N students, and the proxy scores."""
    return [*student_metrics(plans, results, ["random", "bestof"]), *proxy_files(config, results).values()]


def search_results(config: dict, plans: Plans, results: str) -> list[str]:
    """Candidates, score shards, selections and picked random students: listed so that a deleted
    one is rebuilt (and what depends on it rerun), as a deleted student is."""
    files = [f"{results}/search/{b}/candidates.csv" for b in sampled_budgets(config)]
    files += [path for b in scored_budgets(config) for path in score_shards(config, results, b)]
    files += [f"{results}/search/{b}/student.json" for b in searched_budgets(config)]
    files += [plans[n].genotype for n in students(plans) if plans[n].method in ("bestof", "random")]
    return files + list(proxy_files(config, results).values()) + [p for _, p in stability_scorings(config, results)]


def search_histories(config: dict, results: str) -> list[str]:
    """history.csv of every search of the guided-search comparison: per budget, search and seed."""
    return [
        f"{results}/compare/{budget}/{method}/seed-{seed}/history.csv"
        for budget in comparison_budgets(config)
        for method in COMPARED_SEARCHES
        for seed in config["comparison"]["seeds"]
    ]


def comparison_outputs(config: dict, plans: Plans, results: str) -> list[str]:
    """Everything `compare` makes: the histories, the proxy-vs-evaluations table and figure, and, when
    winners are trained, their students and the error tables."""
    if not comparison_budgets(config):
        return []
    files = [*search_histories(config, results), f"{results}/tables/search_curves.md"]
    files.append(f"{results}/figures/search_curves.png")
    if comparison_trained_seeds(config):
        files += [plans[n].genotype for n in students(plans) if plans[n].method in COMPARISON_METHODS]
        files += [*student_metrics(plans, results, COMPARISON_METHODS), f"{results}/tables/search_winners.md"]
    if comparison_trained_seeds(config) and config["comparison"]["bestof"]:
        files.append(f"{results}/tables/bestof_seeds.md")
    return files


def latency_table(results: str) -> str:
    return f"{results}/latency/table.json"


def latency_check(results: str) -> str:
    return f"{results}/latency/check.csv"


def network_latency_files(plans: Plans, results: str, pretrained: str | None) -> list[str]:
    """One measured latency per network and seed of the students table: the teacher (unless
    pretrained: no model file) and the students of `all`. The comparison's students go into their
    own table, which takes no latency files, so they are not measured."""
    return [
        f"{results}/latency/networks/{name}/seed-{seed}.json"
        for name, plan in plans.items()
        if (plan.method == "teacher" and not pretrained) or plan.method in STUDENT_METHODS
        for seed in plan.seeds
    ]


def students_latency_files(config: dict, plans: Plans, results: str, pretrained: str | None) -> list[str]:
    """Latency files the students table reads: every trained network's when latency.enabled."""
    return network_latency_files(plans, results, pretrained) if config["latency"]["enabled"] else []


def latency_outputs(config: dict, plans: Plans, results: str, pretrained: str | None) -> list[str]:
    """What the `latency` target makes (and `all`, when latency.enabled)."""
    files = [latency_table(results), latency_check(results)]
    if config["latency"]["enabled"]:
        files += network_latency_files(plans, results, pretrained)
        files += [f"{results}/tables/students.csv", f"{results}/figures/pareto_latency.png"]
        files += [f"{results}/tables/latency_ranks.csv"]
    return files


def detection_outputs(results: str) -> list[str]:
    """Everything Table 4 (dataset coco) makes: the searched backbone, both trained and evaluated, the table."""
    detection = f"{results}/detection"
    return [
        f"{results}/config.yaml",
        f"{detection}/search/candidates.csv",
        f"{detection}/search/student.json",
        *(f"{detection}/{backbone}/metrics.json" for backbone in DETECTION_ROWS),
        *(f"{results}/tables/table4.{ext}" for ext in ("csv", "md", "tex")),
    ]


def final_outputs(config: dict, plans: Plans, results: str, pretrained: str | None) -> list[str]:
    """Everything `all` makes. Per-network results are listed as well as the tables built from them:
    Snakemake (>= 7.7) does not remake a deleted intermediate file whose consumers are up to date,
    but it always remakes a missing input of the target, and then the tables that depend on it."""
    if is_detection(config):
        return [*detection_outputs(results), timings_table(results)]
    return [
        f"{results}/config.yaml",
        *teacher_metrics(config, results),
        *search_results(config, plans, results),
        *student_metrics(plans, results, STUDENT_METHODS),
        *paper_tables(config, results),
        *paper_figures(config, results),
        *(comparison_outputs(config, plans, results) if config["comparison"]["in_all"] else []),
        *(latency_outputs(config, plans, results, pretrained) if config["latency"]["enabled"] else []),
        timings_table(results),  # rules/report.smk: built after everything else
    ]
