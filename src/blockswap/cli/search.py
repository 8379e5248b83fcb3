"""`blockswap sample`, `pick`, `select` and `best`: drawing candidates inside a budget and choosing
among them (docs/paper.md s.2, s.7). Measuring them is `score` and `search` (cli/scoring.py); nothing
here needs torch, so these workflow steps start quickly."""

from __future__ import annotations

import time
from pathlib import Path

from ..data.datasets import dataset_info
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.blocks import CANDIDATE_SETS, candidate_set
from ..networks.teacher_specs import kept_blocks
from ..provenance import (
    input_digests,
    provenance,
    write_json,
    write_result_text,
)
from ..search.evolution import (
    history_winner,
)
from ..search.sampling import (
    BUDGET_KINDS,
    DEFAULT_TOLERANCE,
    CostTable,
    describe_limits,
    parse_limits,
    sample_candidates,
)
from ..search.selection import load_candidates, select_best
from ..seeds import seed_argument
from .data_options import add_data_options


def cmd_sample(args) -> None:
    arch = parse_arch(args.arch)
    input_size, classes = dataset_info(args.dataset).network_input(args.image_size, args.data_dir)
    start = time.perf_counter()
    kept = kept_blocks(args.keep, args.teacher, arch)
    table = CostTable.build(arch, candidate_set(args.candidates), input_size, classes, kept)
    limits = parse_limits(args.limit)
    held_out = None
    if args.latency_table:
        table, held_out = with_latency_table(table, args.latency_table, args.latency_setting, input_size, classes)
    frame = sample_candidates(table, args.budget, args.samples, args.seed, args.budget_kind, args.tolerance, limits)
    meta = {
        "arch": arch.name,
        "budget": args.budget,
        "budget_kind": args.budget_kind,
        "tolerance": args.tolerance,
        "limits": limits,
        "latency_table": input_digests([args.latency_table]) if args.latency_table else None,
        "latency_setting": args.latency_setting if args.latency_table else None,
        "latency_held_out_error": held_out,
        "candidates": args.candidates,
        "kept": {str(i): t.name for i, t in sorted(kept.items())},
        "samples": args.samples,
        "dataset": args.dataset,
        "input_size": list(input_size),
        "provenance": provenance(seed=args.seed, seconds=time.perf_counter() - start),
    }
    write_result_text(args.out, frame.to_csv(index=False), meta)
    print(
        f"sampled {len(frame)} candidates of {arch.name} within +-{args.tolerance:.1%} of {args.budget:g} "
        f"{args.budget_kind}{describe_limits(limits)} -> {args.out}"
    )


def with_latency_table(table: CostTable, path: str, setting: str, input_size, classes: int) -> tuple[CostTable, dict]:
    """`table` plus the calibrated latency column (whole microseconds) of a latency table measured on
    this machine, and the held-out error of that setting's calibration. Refused where the setting
    has no calibration or its held-out error is above 10 % (`LatencyTable.budget_calibration`)."""
    from ..deploy.latency import LatencyTable  # torch: only a latency budget reads a latency table

    latency = LatencyTable.load(path)
    latency.check_network(table.arch.name, input_size, classes)
    columns = latency.slot_microseconds(table.types, setting)
    return table.with_latency(*columns), latency.budget_calibration(setting)["held_out"]


def add_sample(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="random mixed-block candidates inside a budget",
        description="Sample distinct random genotypes whose cost lies strictly within +-tolerance of the budget.",
    )
    p.add_argument("--arch", required=True, help="the teacher's architecture (wrn-D-K, resnet-18/34)")
    p.add_argument("--budget", type=float, required=True, help="target cost (parameters, MACs or microseconds)")
    p.add_argument("--budget-kind", choices=BUDGET_KINDS, default="params", help="what the budget counts")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="relative band (default 0.025)")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="paper", help="block types to draw from")
    p.add_argument("--samples", type=int, default=1000, help="distinct candidates to keep (default 1000)")
    p.add_argument("--seed", type=seed_argument, default=0, help="random seed (0 to 2^32-1)")
    add_data_options(p, default="cifar10")
    p.add_argument(
        "--limit",
        action="append",
        metavar="KIND=VALUE",
        help="also keep KIND at most VALUE (params, macs, latency in microseconds); repeatable",
    )
    p.add_argument(
        "--latency-table",
        help="latency table measured on this machine ('blockswap latency'), calibrated in --latency-setting "
        "('blockswap latency-calibrate'): needed for latency budgets and limits",
    )
    p.add_argument(
        "--latency-setting", default="cpu/t1/b1", help="which setting of the latency table (default cpu/t1/b1)"
    )
    add_keep_options(p)
    p.add_argument("--out", required=True, help="output CSV: candidate, genotype, params, macs, ops (latency_us)")


def add_keep_options(p) -> None:
    p.add_argument(
        "--keep",
        help="blocks every candidate keeps as the pretrained --teacher's own: sections or blocks by the "
        "teacher's names, e.g. layer1,layer2.0 (draw only the rest)",
    )
    p.add_argument(
        "--teacher", help="the pretrained teacher whose blocks --keep names: SOURCE:NAME[:WEIGHTS], as for train"
    )


def cmd_pick(args) -> None:
    if len(args.candidate) != len(args.out):
        raise BlockswapError(
            f"pick needs one --out per --candidate, got {len(args.candidate)} candidates and {len(args.out)} outputs"
        )
    candidates = load_candidates(args.candidates_csv)
    records = []
    for index in args.candidate:
        rows = candidates[candidates["candidate"] == index]
        if rows.empty:
            raise BlockswapError(f"{args.candidates_csv} has no candidate {index} (0 to {len(candidates) - 1})")
        row = rows.iloc[0]
        records.append(
            {
                "genotype": row["genotype"].split(),
                "candidate": int(row["candidate"]),
                "params": int(row["params"]),
                "macs": int(row["macs"]),
                "ops": int(row["ops"]),
                "source": str(args.candidates_csv),
                "provenance": provenance(),
            }
        )
    # Every candidate is checked before any file is written: all outputs or none.
    for record, out in zip(records, args.out):
        write_json(out, record)
        print(f"candidate {record['candidate']}: {' '.join(record['genotype'])} -> {out}")


def add_pick(sub) -> None:
    p = sub.add_parser(
        "pick",
        help="write sampled candidates as genotype files",
        description="Write candidate i of a candidates CSV as a genotype JSON file (several: "
        "--candidate and --out take one value each per candidate, in the same order).",
    )
    p.add_argument("candidates_csv", help="output of 'blockswap sample'")
    p.add_argument("--candidate", type=int, nargs="+", required=True, help="candidate index(es)")
    p.add_argument("--out", nargs="+", required=True, help="output JSON genotype file(s), one per candidate")


def cmd_select(args) -> None:
    best = select_best([Path(p) for p in args.scores], Path(args.candidates), args.first, args.proxy)
    record = {**best, "provenance": provenance()}
    write_json(args.out, record)
    print(
        f"selected candidate {best['candidate']} of {best['candidates']} ({args.proxy} {best['score']:.6g}, "
        f"{best['params']} params) -> {args.out}"
    )


def add_select(sub) -> None:
    p = sub.add_parser(
        "select",
        help="merge scored shards and pick the highest Fisher potential",
        description="Merge score shards, check that they score every sampled candidate exactly once (as "
        "sampled), write the winning genotype.",
    )
    p.add_argument("scores", nargs="+", help="scores CSV files (all shards)")
    p.add_argument(
        "--candidates",
        required=True,
        help="the candidates CSV the shards were scored from "
        "('blockswap sample --out'): every one must be scored exactly once",
    )
    p.add_argument("--first", type=int, help="only the first N candidates compete (samples ablation: best of N)")
    p.add_argument(
        "--proxy",
        default="fisher",
        help="the proxy that ranks the candidates, at initialisation "
        "(default fisher, the paper's; any name of the proxy registry the shards were scored with)",
    )
    p.add_argument("--out", required=True, help="output JSON (a genotype file 'blockswap cost/train' can read)")


def cmd_best(args) -> None:
    best = history_winner(Path(args.history), args.first)
    write_json(args.out, {**best, "provenance": provenance()})
    print(
        f"selected evaluation {best['candidate']} of {best['candidates']} ({best['proxy']} {best['fitness']:.6g}, "
        f"{best['params']} params) -> {args.out}"
    )


def add_best(sub) -> None:
    p = sub.add_parser(
        "best",
        help="the fittest network of a search history",
        description="Write the fittest evaluation of a 'blockswap search' history (of its first N "
        "only, with --first) as a genotype file, like 'blockswap select'.",
    )
    p.add_argument("history", help="output of 'blockswap search'")
    p.add_argument("--first", type=int, help="only the first N evaluations compete (best of N)")
    p.add_argument("--out", required=True, help="output JSON (a genotype file 'blockswap train' can read)")


COMMANDS = {
    "sample": (add_sample, cmd_sample),
    "pick": (add_pick, cmd_pick),
    "select": (add_select, cmd_select),
    "best": (add_best, cmd_best),
}
