"""Mistakes in a configuration that JSON Schema cannot see (budgets no network reaches, seeds with no
teacher, settings that contradict each other), reported in one line before any job runs."""

from __future__ import annotations

from ..data.datasets import dataset_info
from ..deploy.settings import Setting
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.blocks import candidate_set, parse_block
from ..search.evolution import scaled_sizes
from ..search.proxies import parse_proxies
from ..search.sampling import CostTable, check_budget
from ..validation import check_batch_norm_batch, check_training_batches
from .budgets import (
    ablation_budgets,
    ablation_seeds,
    budget_keys,
    closest_single_blocktype,
    comparison_budgets,
    comparison_samples,
    input_size,
    samples_budget,
)
from .config_file import check_numbers
from .teacher import kept


def check_moonshine(config: dict) -> None:
    """A listed Moonshine block type must be buildable at every block of the teacher (grouped convs
    need group counts dividing the widths); `auto` only ever picks ones that are."""
    names = config["baselines"]["moonshine"]
    if names == "auto":
        return
    arch = parse_arch(config["teacher"]["arch"])
    for name in names:
        try:
            block = parse_block(name)
        except BlockswapError as err:
            raise BlockswapError(f"baselines.moonshine: {err}") from None
        problems = [p for p in (block.problem_at(s.cin, s.cout, s.stride) for s in arch.slots) if p]
        if problems:
            fits = [
                t.name
                for t in candidate_set(config["search"]["candidates"])
                if not any(t.problem_at(s.cin, s.cout, s.stride) for s in arch.slots)
            ]
            raise BlockswapError(
                f"baselines.moonshine: {block.name} does not fit {arch.name} ({problems[0]}); "
                f"allowed here, of the {config['search']['candidates']} types: {', '.join(fits)}"
            )


def check_minibatches(config: dict) -> None:
    """Every training and scoring minibatch must be one batch norm can train on: one image cannot
    pass a 1x1 feature map, which the last stage reaches at small image sizes."""
    arch = parse_arch(config["teacher"]["arch"])
    size, _ = input_size(config)
    training = config["training"]
    check_training_batches(
        arch,
        size,
        training["batch_size"],
        training.get("drop_last", False),
        train_size=dataset_info(config["dataset"]).train_images,
        names={"batch_size": "training.batch_size", "drop_last": "training.drop_last", "image_size": "image_size"},
    )
    batch = config["search"]["batch_size"]
    check_batch_norm_batch(
        arch,
        size,
        batch,
        f"the scoring minibatch (search.batch_size {batch})",
        "set search.batch_size to at least 2, or a larger image_size",
    )


def check_single_blocktype(config: dict) -> None:
    """A budget paired with a single-blocktype network must be one that Figure 2 or the samples
    table is configured for (ablation.budgets, even while random_students is 0, or the samples
    budget), and where they are made, its network must be trained."""
    pairing = config["ablation"].get("single_blocktype") or {}
    if not pairing:
        return
    made = set(ablation_budgets(config))
    if config["ablation"]["samples"]:
        made.add(samples_budget(config))
    configured = made | set(config["ablation"]["budgets"] or config["search"]["budgets"])
    if samples_budget(config) is not None:
        configured.add(samples_budget(config))
    moonshine = config["baselines"]["moonshine"]
    if moonshine == "auto":
        trained = {
            name for name, _ in (closest_single_blocktype(config, b) for b in config["search"]["budgets"]) if name
        }
    else:
        trained = {parse_block(name).name for name in moonshine}
    for budget, name in pairing.items():
        if not isinstance(budget, int) or budget not in configured:
            raise BlockswapError(
                f"ablation.single_blocktype: {budget!r} is not a budget of Figure 2 or the samples table "
                f"({', '.join(map(str, sorted(configured)))})"
            )
        try:
            block = parse_block(name)
        except BlockswapError as err:
            raise BlockswapError(f"ablation.single_blocktype: {err}") from None
        if budget in made and block.name not in trained:
            raise BlockswapError(
                f"ablation.single_blocktype: all-{block.name} (paired with {budget}) is not trained; "
                f"add it to baselines.moonshine (trained: {', '.join(sorted(trained)) or 'none'})"
            )


def check_budgets(config: dict, keep: dict) -> None:
    """Every sampled budget must hold at least search.samples distinct networks (counted exactly),
    or its sampling job would fail after the jobs before it had run."""
    keys = budget_keys(config)
    if not keys and not comparison_budgets(config):
        return
    if config["search"]["budget_kind"] == "latency":
        return  # latency budgets are checked against the measured table when candidates are sampled
    search = config["search"]
    size, classes = input_size(config)
    arch = parse_arch(config["teacher"]["arch"])
    try:
        table = CostTable.build(arch, candidate_set(search["candidates"]), size, classes, keep)
    except BlockswapError as err:
        raise BlockswapError(f"search.candidates: {err}") from None
    for budget, key in keys.items():
        try:
            check_budget(table, budget, search["budget_kind"], search["tolerance"], search["samples"], "search.samples")
        except BlockswapError as err:
            raise BlockswapError(f"{key}: {err}") from None
    for budget in comparison_budgets(config):  # every evaluation of a search is a distinct network
        try:
            check_budget(
                table,
                budget,
                search["budget_kind"],
                search["tolerance"],
                comparison_samples(config),
                "comparison.samples (or search.samples)",
            )
        except BlockswapError as err:
            raise BlockswapError(f"comparison.budgets: {err}") from None


def check_search_method(config: dict) -> None:
    """Guided-search settings the schema cannot check: the tournament against the population, the
    proxy against the registry, and the comparison's
    counts against its seeds, evaluations and budgets."""
    search, comparison = config["search"], config.get("comparison") or {}
    population, tournament = search.get("population", 64), search.get("tournament", 10)
    if tournament > population:
        raise BlockswapError(
            f"search.tournament: {tournament} is larger than search.population ({population}); "
            f"allowed: 1 to {population}"
        )
    scaled_sizes(search["samples"], population, tournament)
    try:
        parse_proxies([search.get("proxy", "fisher")])
    except BlockswapError as err:
        raise BlockswapError(f"search.proxy: {err}") from None
    seeds, trained = comparison.get("seeds") or [], comparison.get("trained", 0)
    if not seeds:
        if trained or comparison.get("bestof"):
            raise BlockswapError("comparison.trained and comparison.bestof need comparison.seeds")
        return
    if trained > len(seeds):
        raise BlockswapError(
            f"comparison.trained: {trained} is more than the {len(seeds)} comparison.seeds; allowed: 0 to {len(seeds)}"
        )
    samples = comparison_samples(config)
    too_many = [n for n in comparison.get("bestof") or [] if n > samples]
    if too_many:
        raise BlockswapError(
            f"comparison.bestof: {too_many} exceed the {samples} evaluations of a search "
            "(comparison.samples, or search.samples)"
        )
    if comparison.get("bestof") and not trained:
        raise BlockswapError("comparison.bestof trains networks: it needs comparison.trained of at least 1")
    if not comparison_budgets(config):
        raise BlockswapError("comparison.seeds needs at least one budget (comparison.budgets or search.budgets)")


def check_plan(config: dict) -> None:
    """Mistakes that schema validation cannot see, reported before any job runs."""
    check_numbers(config)
    check_search_method(config)
    keep = kept(config)  # teacher.keep: a pretrained teacher's blocks, by its names
    search, ablation = config["search"], config["ablation"]
    seeds = set(config["seeds"])
    extra = sorted(set(ablation_seeds(config)) - seeds)
    if extra:
        raise BlockswapError(
            f"ablation.seeds: {extra} are not in seeds {sorted(seeds)} (no teacher is trained for them)"
        )
    if ablation.get("student_seeds") and not ablation["random_students"]:
        raise BlockswapError(
            "ablation.student_seeds: there are no random students to train under them "
            "(ablation.random_students is 0); set it, or student_seeds to null"
        )
    if ablation["random_students"] > search["samples"]:
        raise BlockswapError(
            f"ablation.random_students: {ablation['random_students']} is more than search.samples "
            f"({search['samples']}); random students are the first sampled candidates; "
            f"allowed: 0 to {search['samples']}"
        )
    stability = ablation.get("stability_candidates")
    if stability is not None and stability > search["samples"]:
        raise BlockswapError(
            f"ablation.stability_candidates: {stability} is more than search.samples "
            f"({search['samples']}); allowed: 2 to {search['samples']}"
        )
    too_many = [n for n in ablation["samples"] if n > search["samples"]]
    if too_many:
        raise BlockswapError(f"ablation.samples: {too_many} exceed search.samples ({search['samples']})")
    budget = ablation["samples_budget"]
    if ablation["samples"] and budget is not None and budget not in search["budgets"]:
        raise BlockswapError(f"ablation.samples_budget: {budget} is not one of search.budgets {search['budgets']}")
    if ablation["samples"] and not search["budgets"]:
        raise BlockswapError("ablation.samples needs at least one search budget")
    check_moonshine(config)
    check_single_blocktype(config)
    check_minibatches(config)
    check_budgets(config, keep)
    check_latency(config)
    check_cuda_graphs(config)


def check_cuda_graphs(config: dict) -> None:
    """Captured steps run in one process: `train --cuda-graphs` refuses --nproc above 1."""
    training = config["training"]
    if training["cuda_graphs"] and training["gpus"] > 1:
        raise BlockswapError(
            f"training.cuda_graphs needs training.gpus: 1 (captured steps run in one process), got {training['gpus']}"
        )


def check_latency(config: dict) -> None:
    """The latency setting that budgets, limits and the students' column use must be one the table
    measures (latency.threads x latency.batches, on the device asked for)."""
    latency = config.get("latency")
    if latency is None:
        return
    setting = Setting.parse(latency["setting"])
    text = latency["setting"].split("/")
    if setting.device == "cuda":
        if latency["device"] == "cpu":
            raise BlockswapError(f"latency.setting: {latency['setting']} is a CUDA setting but latency.device is cpu")
    elif text[1][1:] not in [str(t) for t in latency["threads"]]:
        raise BlockswapError(
            f"latency.setting: {latency['setting']} uses {text[1][1:]} threads, which latency.threads "
            f"{latency['threads']} does not measure"
        )
    if latency.get("clock") == "thread" and (
        latency["device"] != "cpu" or latency["threads"] != [1] or setting.threads != 1
    ):
        raise BlockswapError(
            "latency.clock: the thread clock times one CPU thread; it needs latency.device cpu, "
            "latency.threads [1] and a cpu/t1 setting"
        )
    if setting.batch not in latency["batches"]:
        raise BlockswapError(
            f"latency.setting: {latency['setting']} uses batch {setting.batch}, which latency.batches "
            f"{latency['batches']} does not measure"
        )


def check_detection(config: dict) -> None:
    """Table 4's image sizes: the shorter side cannot be resized beyond the longer one's limit."""
    detection = config["detection"]
    if detection["min_size"] > detection["max_size"]:
        raise BlockswapError("detection.min_size is more than detection.max_size")
