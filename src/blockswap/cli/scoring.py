"""`blockswap score` and `search`: measuring candidates with the proxies (docs/paper.md s.2, s.7),
a sampled list's shard at a time, or along a guided search (docs/evolution.md)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..data.datasets import dataset_info
from ..data.loaders import load_dataset
from ..devices import DEVICE_HELP, resolve_device
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.blocks import CANDIDATE_SETS, candidate_set
from ..networks.teacher_specs import kept_blocks
from ..provenance import (
    provenance_path,
    read_sidecar,
)
from ..search.evolution import (
    DEFAULT_POPULATION,
    DEFAULT_TOURNAMENT,
    SEARCH_METHODS,
    SearchSettings,
    search_to_file,
)
from ..search.proxies import CONTROLS, PROXIES
from ..search.sampling import (
    BUDGET_KINDS,
    DEFAULT_TOLERANCE,
    CostTable,
)
from ..search.scoring import MEMORY_FORMATS, MINIBATCH_MODES, Scorer, ScoringSettings, parse_shard, score_candidates
from ..search.selection import load_candidates
from ..seeds import seed_argument
from ..validation import check_batch_norm_batch
from .data_options import add_data_options, add_normalisation_options, normalisation
from .search import add_keep_options

DATASETS_OWN = "the dataset's own"


def check_scoring_batch(arch, data, batch_size: int) -> None:
    """The proxies are measured with batch norm in training mode: a minibatch of one image where the
    last stage is 1x1 is one line here, before any candidate is scored (torch would fail mid-candidate)."""
    check_batch_norm_batch(
        arch,
        data.input_size,
        min(batch_size, len(data.train)),
        f"the scoring minibatch (--batch-size {batch_size}, {len(data.train)} training images)",
        "use a --batch-size of at least 2, or a larger --image-size",
    )


def add_memory_format(p) -> None:
    p.add_argument(
        "--memory-format",
        choices=list(MEMORY_FORMATS),
        default="auto",
        help="layout scoring runs in (it changes float rounding): auto = channels-last on the CPU, "
        "nchw on a GPU, the faster on each (default auto)",
    )


def cmd_score(args) -> None:
    mean, std = normalisation(args, DATASETS_OWN)  # a mistake in it is named before any file is read
    candidates = load_candidates(args.candidates_csv)
    if args.limit is not None:
        if args.limit < 1:
            raise BlockswapError(f"--limit must be at least 1, got {args.limit}")
        candidates = candidates.sort_values("candidate").head(args.limit)
    arch = args.arch or (read_sidecar(args.candidates_csv) or {}).get("arch")
    if arch is None:
        raise BlockswapError(
            f"no --arch given and {provenance_path(Path(args.candidates_csv))} does not say which "
            "architecture was sampled"
        )
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_dir, args.image_size, 0, args.download)
    settings = ScoringSettings(
        arch=parse_arch(arch).name,
        dataset=data.name,
        num_classes=data.num_classes,
        image_size=data.image_size,
        batch_size=args.batch_size,
        seed=args.seed,
        proxies=args.proxies.split(","),
        minibatches=[int(k) for k in args.minibatches.split(",")],
        minibatch=args.minibatch,
        channels_last=MEMORY_FORMATS[args.memory_format],
        tf32=args.tf32,
        mean=mean,
        std=std,
    )
    check_scoring_batch(parse_arch(arch), data, settings.batch_size)
    shard = parse_shard(args.shard)
    scored = score_candidates(candidates, settings, data, Path(args.out), shard, device, progress=not args.quiet)
    print(f"scored {len(scored)} candidates (shard {shard[0]}/{shard[1]}) -> {args.out}")


def add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="Fisher potential (and ablation proxies) of candidates",
        description="Score candidates by Fisher potential at initialisation on one minibatch; shardable, resumable.",
    )
    p.add_argument("candidates_csv", help="output of 'blockswap sample'")
    add_data_options(p, required=True, download=True)
    p.add_argument("--arch", help="architecture (default: read from the candidates' provenance)")
    p.add_argument("--shard", default="0/1", help="i/n: score the i-th of n parts (0-based; default 0/1)")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch size (paper: 128)")
    p.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seeds the minibatch and every candidate's initialisation (0 to 2^32-1)",
    )
    measured = [name for name, proxy in PROXIES.items() if not proxy.cost_column]
    lower = [name for name, proxy in PROXIES.items() if not proxy.higher_is_better]
    signs = f"lower = better for {', '.join(lower)}, higher for the rest" if lower else "higher = better for all"
    p.add_argument(
        "--proxies",
        default="fisher",
        help=f"comma-separated, from: {', '.join(measured)} ({signs}; docs/proxies.md); fisher is always scored; the "
        f"candidates' {', '.join(CONTROLS)} columns are controls (accepted, no column added); a column "
        "<proxy>@<k> per proxy and k, and seconds_<proxy> per proxy pass",
    )
    p.add_argument("--minibatches", default="1", help="comma-separated k: proxies after k minibatches (e.g. 1,10,100)")
    p.add_argument(
        "--minibatch",
        choices=MINIBATCH_MODES,
        default="shared",
        help="shared: one seeded minibatch for all (default); per-candidate: the released code's way",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--tf32",
        action="store_true",
        help="GPU: TF32 convolutions (faster on Ampere+, but Fisher moved by "
        "up to 5.6%% from float32 on an H100; default: float32)",
    )
    add_memory_format(p)
    add_normalisation_options(p, DATASETS_OWN + "; give a pretrained teacher's, as its students are trained with")
    p.add_argument("--limit", type=int, help="score only the first K candidates (e.g. the ablation's random students)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output CSV (a .provenance.json is written beside it)")


def cmd_search(args) -> None:
    mean, std = normalisation(args, DATASETS_OWN)
    arch = parse_arch(args.arch)
    input_size, classes = dataset_info(args.dataset).network_input(args.image_size, args.data_dir)
    table = CostTable.build(
        arch, candidate_set(args.candidates), input_size, classes, kept_blocks(args.keep, args.teacher, arch)
    )
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_dir, args.image_size, 0, args.download)
    scoring = ScoringSettings(
        arch=arch.name,
        dataset=data.name,
        num_classes=data.num_classes,
        image_size=data.image_size,
        batch_size=args.batch_size,
        seed=args.score_seed,
        proxies=[args.proxy],
        channels_last=MEMORY_FORMATS[args.memory_format],
        tf32=args.tf32,
        mean=mean,
        std=std,
    ).on(device)
    check_scoring_batch(arch, data, scoring.batch_size)
    scorer = Scorer(scoring, data, device)
    # The proxy registry (through the Scorer) says the sign under which the proxy ranks networks.
    proxy = next(p for p in scorer.proxies if p.name == args.proxy)
    column = "fisher" if proxy.name == "fisher" else f"{proxy.name}@1"
    settings = SearchSettings(
        method=args.method,
        budget=args.budget,
        samples=args.samples,
        seed=args.seed,
        budget_kind=args.budget_kind,
        tolerance=args.tolerance,
        population=args.population,
        tournament=args.tournament,
        proxy=proxy.name,
        higher_is_better=proxy.higher_is_better,
    )

    def evaluate(key, choice) -> dict:
        record = scorer.score(key, table.genotype(choice))
        return {"fitness": float(record[column]), "fisher": float(record["fisher"]), "seconds": record["seconds"]}

    extra = {
        "arch": arch.name,
        "candidates": args.candidates,
        "dataset": data.name,
        "input_size": list(input_size),
        "scoring": asdict(scoring),
    }
    history = search_to_file(table, settings, evaluate, Path(args.out), extra, device)
    best = history["fitness"].max() if proxy.higher_is_better else history["fitness"].min()
    print(
        f"{args.method} search: {len(history)} evaluations of {arch.name} within +-{args.tolerance:.1%} of "
        f"{args.budget:g} {args.budget_kind}, best {proxy.name} {best:.6g} -> {args.out}"
    )


def add_search(sub) -> None:
    p = sub.add_parser(
        "search",
        help="random or evolutionary search inside a budget, one resumable history",
        description="Search a budget band by random sampling or regularised (aging) evolution, with a proxy of "
        "the registry as fitness; every evaluation is checkpointed, so a rerun resumes (docs/evolution.md).",
    )
    p.add_argument("--method", choices=SEARCH_METHODS, default="evolution", help="random or evolution")
    p.add_argument("--arch", required=True, help="the teacher's architecture (wrn-D-K, resnet-18/34)")
    p.add_argument("--budget", type=float, required=True, help="target cost (parameters or MACs)")
    p.add_argument("--budget-kind", choices=BUDGET_KINDS, default="params", help="what the budget counts")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="relative band (default 0.025)")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="paper", help="block types to draw from")
    p.add_argument("--samples", type=int, default=1000, help="proxy evaluations (default 1000)")
    p.add_argument(
        "--population",
        type=int,
        default=DEFAULT_POPULATION,
        help=f"evolution: population P (default {DEFAULT_POPULATION}; at most a third of the evaluations)",
    )
    p.add_argument(
        "--tournament",
        type=int,
        default=DEFAULT_TOURNAMENT,
        help=f"evolution: tournament size S (default {DEFAULT_TOURNAMENT}; scaled with P)",
    )
    p.add_argument("--proxy", default="fisher", help="fitness: a proxy of the registry (default fisher)")
    p.add_argument("--seed", type=seed_argument, default=0, help="search seed: proposals and tournaments")
    p.add_argument(
        "--score-seed",
        type=seed_argument,
        default=0,
        help="seeds the proxy's minibatch and initialisations (search.seed), the same for every search",
    )
    add_data_options(p, required=True, download=True)
    p.add_argument("--batch-size", type=int, default=128, help="proxy minibatch size (paper: 128)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--tf32", action="store_true", help="GPU: TF32 convolutions (default: float32)")
    add_memory_format(p)
    add_normalisation_options(p, DATASETS_OWN + "; give a pretrained teacher's, as its students are trained with")
    add_keep_options(p)
    p.add_argument("--out", required=True, help="history CSV (a .provenance.json is written beside it)")


COMMANDS = {
    "score": (add_score, cmd_score),
    "search": (add_search, cmd_search),
}
