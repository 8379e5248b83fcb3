"""The `blockswap` command. Each subcommand is a function registered in `COMMANDS`.

A user's mistake (`BlockswapError`, or a bad argument) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import yaml

from .blocks import CANDIDATE_SETS, FAMILIES, candidate_set, parse_block
from .checkpoint import load_model
from .datasets import DATASETS, dataset_info, evaluation_batches, load_dataset
from .devices import resolve_device
from .errors import BlockswapError
from .fisher import CONTROLS, PROXIES
from .genotype import Genotype
from .models import NetworkSpec, parse_arch
from .provenance import atomic_write_text, input_digests, provenance, provenance_path, write_json, write_sidecar
from .report import (
    correlation_layout,
    correlation_table,
    cost_table,
    latex,
    markdown,
    students_table,
    table2,
    table2_display,
)
from .sampling import BUDGET_KINDS, DEFAULT_TOLERANCE, CostTable, read_candidates, sample_candidates
from .scoring import MINIBATCH_MODES, ScoringSettings, parse_shard, score_candidates, select_best
from .train import CONFIG_FIELDS, EVAL_BATCH_SIZE, PROTOCOLS, SCHEDULES, TrainConfig, Trainer, evaluate

USAGE_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage dump) and exit code 2."""

    def error(self, message: str):
        raise BlockswapError(f"{message} (see '{self.prog} --help')")


# --- blocks -------------------------------------------------------------------------------------

EXTRA_TYPES = ("MBConv(6)",)  # in the zoo, in no candidate set (a Table 2 baseline)


def cmd_blocks(args) -> None:
    if args.set:
        types = CANDIDATE_SETS[args.set]
    else:
        seen = dict.fromkeys(t for s in CANDIDATE_SETS.values() for t in s)
        types = tuple(seen) + tuple(parse_block(n) for n in EXTRA_TYPES)
    rows = [("paper", "released", "family", "wrapper", "sets", "description")]
    for t in types:
        sets = ",".join(name for name, members in CANDIDATE_SETS.items() if t in members) or "-"
        family = FAMILIES[t.family]
        wrapper = "basic (2 units)" if family.units == 2 else "bottleneck (1 unit)"
        rows.append((t.name, t.released_name or "-", t.family, wrapper, sets, family.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


# --- cost ---------------------------------------------------------------------------------------


def input_size_for(dataset: str, image_size: Optional[int]) -> tuple[tuple[int, int], int]:
    info = dataset_info(dataset)
    size = info.image_size if image_size is None else image_size
    if size < 1:
        raise BlockswapError(f"--image-size must be a positive number of pixels, got {size}")
    return (size, size), info.num_classes


def cmd_cost(args) -> None:
    arch = parse_arch(args.arch)
    input_size, classes = input_size_for(args.dataset, args.image_size)
    genotype = Genotype.from_spec(args.genotype, arch.depth) if args.genotype else None
    spec = NetworkSpec.create(arch, genotype, classes)
    result = {"arch": arch.name, "genotype": spec.genotype.names, **spec.cost(input_size).as_dict()}
    if args.out:
        record = {"name": args.name, "method": args.method, **result, "dataset": args.dataset}
        record.update(input_size=list(input_size), num_classes=classes)
        write_json(args.out, {**record, "provenance": provenance()})
    print(json.dumps(result))


# --- data ---------------------------------------------------------------------------------------


def cmd_data(args) -> None:
    start = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir, args.image_size, args.val_size, args.download)
    splits = {name: getattr(data, name) for name in ("train", "val", "test") if getattr(data, name) is not None}
    summary = {
        "dataset": data.name,
        "num_classes": data.num_classes,
        "image_size": data.image_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "splits": {name: len(split) for name, split in splits.items()},
        **data.source,
    }
    if args.out:
        record = {**summary, "provenance": provenance(seconds=time.perf_counter() - start)}
        write_json(args.out, record)
    print(json.dumps(summary))


def add_data(sub) -> None:
    p = sub.add_parser(
        "data",
        help="check (and optionally download) a dataset",
        description="Load a dataset, print its splits and normalisation; with --download fetch it first.",
    )
    where = "; ".join(f"{d.name}: {d.where}" for d in DATASETS.values())
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)} (files: {where})")
    p.add_argument("--data-dir", default="data", help="folder holding the dataset files, DATA above (default: data)")
    p.add_argument("--image-size", type=int, help="digits only: side of the resized images")
    p.add_argument("--val-size", type=int, default=0, help="training images held out for validation")
    p.add_argument("--download", action="store_true", help="download missing files when the network allows")
    p.add_argument("--out", help="also write the summary, with provenance, to this JSON file")


# --- search: sample, score, select -------------------------------------------------------------


def cmd_sample(args) -> None:
    arch = parse_arch(args.arch)
    input_size, classes = input_size_for(args.dataset, args.image_size)
    start = time.perf_counter()
    table = CostTable.build(arch, candidate_set(args.candidates), input_size, classes)
    frame = sample_candidates(table, args.budget, args.samples, args.seed, args.budget_kind, args.tolerance)
    atomic_write_text(args.out, frame.to_csv(index=False))
    meta = {
        "arch": arch.name,
        "budget": args.budget,
        "budget_kind": args.budget_kind,
        "tolerance": args.tolerance,
        "candidates": args.candidates,
        "samples": args.samples,
        "dataset": args.dataset,
        "input_size": list(input_size),
        "provenance": provenance(seed=args.seed, seconds=time.perf_counter() - start),
    }
    write_json(provenance_path(Path(args.out)), meta)
    print(f"sampled {len(frame)} candidates of {arch.name} within +-{args.tolerance:.1%} of {args.budget:g} "
          f"{args.budget_kind} -> {args.out}")


def add_sample(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="random mixed-block candidates inside a budget",
        description="Sample distinct random genotypes whose cost lies strictly within +-tolerance of the budget.",
    )
    p.add_argument("--arch", required=True, help="the teacher's architecture (wrn-D-K, resnet-18/34)")
    p.add_argument("--budget", type=float, required=True, help="target cost (parameters or MACs)")
    p.add_argument("--budget-kind", choices=BUDGET_KINDS, default="params", help="what the budget counts")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="relative band (default 0.025)")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="paper", help="block types to draw from")
    p.add_argument("--samples", type=int, default=1000, help="distinct candidates to keep (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--dataset", default="cifar10", help="sets input size and classes (default cifar10)")
    p.add_argument("--image-size", type=int, help="override the dataset's image size (pixels)")
    p.add_argument("--out", required=True, help="output CSV: candidate, genotype, params, macs, ops")


def cmd_score(args) -> None:
    candidates = read_candidates(args.candidates_csv)
    if args.limit is not None:
        if args.limit < 1:
            raise BlockswapError(f"--limit must be at least 1, got {args.limit}")
        candidates = candidates.sort_values("candidate").head(args.limit)
    meta_path = provenance_path(Path(args.candidates_csv))
    arch = args.arch or (json.loads(meta_path.read_text())["arch"] if meta_path.is_file() else None)
    if arch is None:
        raise BlockswapError(f"no --arch given and {meta_path} does not say which architecture was sampled")
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
    )
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
    p.add_argument("--dataset", required=True, help="digits, cifar10, cifar100, svhn or imagenet")
    p.add_argument("--data-dir", default="data", help="folder holding the dataset files")
    p.add_argument("--image-size", type=int, help="digits only: side of the resized images")
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--arch", help="architecture (default: read from the candidates' provenance)")
    p.add_argument("--shard", default="0/1", help="i/n: score the i-th of n parts (0-based; default 0/1)")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch size (paper: 128)")
    p.add_argument("--seed", type=int, default=0, help="seeds the minibatch and every candidate's initialisation")
    signs = ", ".join(f"{name} ({'higher' if p.higher_is_better else 'lower'} = better)" for name, p in PROXIES.items())
    controls = ", ".join(f"{name} ({'higher' if up else 'lower'} = better)" for name, up in CONTROLS.items())
    p.add_argument(
        "--proxies",
        default="fisher",
        help=f"comma-separated, from: {signs}; the candidates' {controls} columns are controls",
    )
    p.add_argument("--minibatches", default="1", help="comma-separated k: proxies after k minibatches (e.g. 1,10,100)")
    p.add_argument("--minibatch", choices=MINIBATCH_MODES, default="shared",
                   help="shared: one seeded minibatch for all (default); per-candidate: the released code's way")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--limit", type=int, help="score only the first K candidates (e.g. the ablation's random students)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output CSV (a .provenance.json is written beside it)")


def cmd_pick(args) -> None:
    candidates = read_candidates(args.candidates_csv)
    rows = candidates[candidates["candidate"] == args.candidate]
    if rows.empty:
        raise BlockswapError(f"{args.candidates_csv} has no candidate {args.candidate} (0 to {len(candidates) - 1})")
    row = rows.iloc[0]
    record = {"genotype": row["genotype"].split(), "candidate": int(row["candidate"]), "params": int(row["params"]),
              "macs": int(row["macs"]), "ops": int(row["ops"]), "source": str(args.candidates_csv),
              "provenance": provenance()}
    write_json(args.out, record)
    print(f"candidate {args.candidate}: {row['genotype']} -> {args.out}")


def add_pick(sub) -> None:
    p = sub.add_parser("pick", help="write one sampled candidate as a genotype file",
                       description="Write candidate i of a candidates CSV as a genotype JSON file.")
    p.add_argument("candidates_csv", help="output of 'blockswap sample'")
    p.add_argument("--candidate", type=int, required=True, help="candidate index")
    p.add_argument("--out", required=True, help="output JSON genotype file")


def cmd_select(args) -> None:
    best = select_best([Path(p) for p in args.scores])
    record = {**best, "provenance": provenance()}
    write_json(args.out, record)
    print(f"selected candidate {best['candidate']} of {best['candidates']} (Fisher {best['fisher']:.6g}, "
          f"{best['params']} params) -> {args.out}")


def add_select(sub) -> None:
    p = sub.add_parser(
        "select",
        help="merge scored shards and pick the highest Fisher potential",
        description="Merge score shards, check none is missing or duplicated, write the winning genotype.",
    )
    p.add_argument("scores", nargs="+", help="scores CSV files (all shards)")
    p.add_argument("--out", required=True, help="output JSON (a genotype file 'blockswap cost/train' can read)")


# --- train, evaluate ----------------------------------------------------------------------------

# CLI flag -> TrainConfig field, for the hyperparameters that can be set either way.
TRAIN_FLAGS = {
    "epochs": int, "batch_size": int, "lr": float, "momentum": float, "weight_decay": float, "schedule": str,
    "step_size": int, "gamma": float, "seed": int, "beta": float, "kd_alpha": float, "kd_temperature": float,
    "val_size": int, "image_size": int, "data_dir": str,
}


def train_config(args) -> TrainConfig:
    values = {"arch": parse_arch(args.arch).name, "dataset": args.dataset, **PROTOCOLS[args.protocol]}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise BlockswapError(f"training config {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise BlockswapError(f"{path}: expected a mapping of hyperparameters")
        unknown = sorted(set(loaded) - CONFIG_FIELDS)
        if unknown:
            raise BlockswapError(f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(CONFIG_FIELDS))}")
        values.update(loaded)
    for name in TRAIN_FLAGS:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.no_cutout:
        values["cutout"] = False
    for flag in ("bf16", "channels_last", "compile"):
        values[flag] = values.get(flag, False) or getattr(args, flag)
    if args.teacher:
        values["teacher"] = str(Path(args.teacher).resolve())
    spec = args.genotype or values.get("genotype")
    if spec is not None:
        arch = parse_arch(values["arch"])
        genotype = Genotype.from_data(spec) if isinstance(spec, list) else Genotype.from_spec(spec, arch.depth)
        values["genotype"] = genotype.names
    return TrainConfig(**values)


def cmd_train(args) -> None:
    config = train_config(args)
    tags = {}
    for item in args.tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BlockswapError(f"--tag needs KEY=VALUE, got {item!r}")
        tags[key] = value
    if args.genotype and Path(args.genotype).is_file():
        tags.setdefault("genotype_file", args.genotype)  # the report reads a searched Fisher score from it
    trainer = Trainer(config, Path(args.out), resolve_device(args.device), progress=not args.quiet,
                      log=lambda line: print(line, flush=True), tags=tags)
    trainer.run()


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a teacher, or distil a student with attention transfer",
        description="Train ARCH from scratch, or with --teacher distil it with CE + attention transfer "
        "(PAPER.md s.4). Rerunning resumes; a finished run is not retrained.",
    )
    p.add_argument("--arch", required=True, help="wrn-D-K, resnet-18 or resnet-34")
    p.add_argument("--genotype", help="genotype file, name list, or one block name (default: all S)")
    p.add_argument("--dataset", required=True, help="digits, cifar10, cifar100, svhn or imagenet")
    p.add_argument("--out", required=True, help="output folder: model.pt, metrics.json, history.csv")
    p.add_argument("--teacher", help="trained teacher (folder or model.pt): distil with attention transfer")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cifar",
                   help="hyperparameter preset: cifar (the paper's CIFAR-10 protocol) or imagenet")
    p.add_argument("--config", help="YAML file of hyperparameters (TrainConfig fields); flags override it")
    p.add_argument("--epochs", type=int, help="epochs (paper: 200)")
    p.add_argument("--batch-size", type=int, help="minibatch size (paper: 128)")
    p.add_argument("--lr", type=float, help="initial learning rate (paper: 0.1)")
    p.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    p.add_argument("--weight-decay", type=float, help="weight decay (paper: 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, help="cosine (per epoch, to 0) or step")
    p.add_argument("--step-size", type=int, help="step schedule: epochs between decays (ImageNet: 30)")
    p.add_argument("--gamma", type=float, help="step schedule: decay factor (0.1)")
    p.add_argument("--no-cutout", action="store_true", help="train without Cutout")
    p.add_argument("--seed", type=int, help="seeds initialisation, data order and augmentation")
    p.add_argument("--beta", type=float, help="attention-transfer weight per point (paper: 1000; ImageNet 750)")
    p.add_argument("--kd-alpha", type=float, help="Hinton KD weight, 0 = off (the paper uses none)")
    p.add_argument("--kd-temperature", type=float, help="KD temperature")
    p.add_argument("--val-size", type=int, help="training images held out for validation")
    p.add_argument("--data-dir", help="folder holding the dataset files (default: data)")
    p.add_argument("--image-size", type=int, help="digits only: side of the resized images")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--bf16", action="store_true", help="fast mode: bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="fast mode: NHWC memory layout")
    p.add_argument("--compile", action="store_true", help="fast mode: torch.compile")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines remain)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="label stored in metrics.json (e.g. method=blockswap); does not affect training")


def cmd_evaluate(args) -> None:
    model, record = load_model(args.model)
    device = resolve_device(args.device)
    dataset = args.dataset or record["dataset"]
    image_size = args.image_size or (record["input_size"][0] if dataset == "digits" else None)
    data = load_dataset(dataset, args.data_dir, image_size, 0)
    if data.num_classes != record["num_classes"]:
        raise BlockswapError(f"{args.model} predicts {record['num_classes']} classes but {dataset} has {data.num_classes}")
    model.to(device)
    result = evaluate(model, evaluation_batches(data, "test", EVAL_BATCH_SIZE, device), device)
    print(json.dumps({"model": str(args.model), "dataset": dataset, "test_error": result["top1_error"],
                      "test_error_top5": result["top5_error"]}))


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test error of a trained model", description="Recompute test error.")
    p.add_argument("model", help="a training folder or its model.pt")
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    p.add_argument("--data-dir", default="data", help="folder holding the dataset files")
    p.add_argument("--image-size", type=int, help="digits only (default: the model's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")


# --- registry -----------------------------------------------------------------------------------


def add_blocks(sub) -> None:
    p = sub.add_parser("blocks", help="list the block types of the zoo", description="List the block types.")
    p.add_argument("--set", choices=sorted(CANDIDATE_SETS), help="only this candidate set")


def add_cost(sub) -> None:
    p = sub.add_parser(
        "cost",
        help="params, MACs and paper ops of a network",
        description="Print params, MACs and paper ops of ARCH with a genotype as one JSON object.",
    )
    p.add_argument("--arch", required=True, help="wrn-D-K, resnet-18 or resnet-34")
    p.add_argument(
        "--genotype",
        help="a genotype file (.json/.yaml/.csv), a whitespace-separated list of block names, "
        "or one block name for all blocks (default: all S, the teacher)",
    )
    p.add_argument("--dataset", default="cifar10", help="sets input size and classes (default cifar10)")
    p.add_argument("--image-size", type=int, help="override the dataset's image size (pixels)")
    p.add_argument("--out", help="also write the result, with provenance, to this JSON file")
    p.add_argument("--name", help="label recorded in --out (e.g. teacher, moonshine-gn4)")
    p.add_argument("--method", help="method recorded in --out (teacher, blockswap, moonshine, reduced)")


# --- report ---------------------------------------------------------------------------------------


def read_students(path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise BlockswapError(f"students table {path} does not exist") from None


def report_costs(args):
    table = cost_table(args.inputs)
    return table, table


def report_students(args):
    table = students_table(args.inputs)
    return table, table


def report_table2(args):
    table = table2(read_all_students(args.inputs))
    return table, table2_display(table)


def report_correlation(args):
    files = parse_pairs(args.proxies, "--proxies")
    table = correlation_table(read_all_students(args.inputs), files)
    return table, correlation_layout(table)


# Report kind -> builder returning (full table for CSV, display table for Markdown/LaTeX).
REPORT_BUILDERS = {
    "costs": report_costs,
    "students": report_students,
    "table2": report_table2,
    "correlation": report_correlation,
}


def derived_inputs(args) -> list[str]:
    """Every file a table or figure is computed from: the positional inputs, any --proxies files and
    (search figure) the selection JSON."""
    student = [args.student] if getattr(args, "student", None) else []
    return list(args.inputs) + list(parse_pairs(args.proxies, "--proxies").values()) + student


def derived_record(args, outputs, start: float, **extra) -> dict:
    return {
        "kind": args.kind,
        "outputs": [str(p) for p in outputs],
        **extra,
        "inputs": input_digests(derived_inputs(args)),
        "provenance": provenance(seconds=time.perf_counter() - start),
    }


def cmd_report(args) -> None:
    start = time.perf_counter()
    table, display = REPORT_BUILDERS[args.kind](args)
    outputs = [args.csv]
    atomic_write_text(args.csv, table.to_csv(index=False))
    if args.md:
        atomic_write_text(args.md, markdown(display))
        outputs.append(args.md)
    if args.tex:
        atomic_write_text(args.tex, latex(display))
        outputs.append(args.tex)
    write_sidecar(args.csv, derived_record(args, outputs, start, rows=len(table)))
    print(f"wrote {len(table)} rows to {args.csv}")


def add_report(sub) -> None:
    p = sub.add_parser("report", help="assemble a table from result files", description="Assemble a table: "
                       "costs (cost JSONs), students (metrics.json files), table2 (students CSVs), "
                       "correlation (students CSVs and --proxies).")
    p.add_argument("kind", choices=sorted(REPORT_BUILDERS), help="which table")
    p.add_argument("inputs", nargs="+", help="input files")
    p.add_argument("--proxies", action="append", metavar="BUDGET=PATH", help="correlation: proxy scores per budget")
    p.add_argument("--csv", required=True, help="output CSV")
    p.add_argument("--md", help="also write a Markdown table here")
    p.add_argument("--tex", help="also write a LaTeX table here")


# --- figure -------------------------------------------------------------------------------------


def parse_pairs(items, what: str) -> dict:
    pairs = {}
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep or not key.isdigit():
            raise BlockswapError(f"{what} needs BUDGET=PATH, got {item!r}")
        pairs[key] = path
    return pairs


def read_all_students(paths) -> pd.DataFrame:
    return pd.concat([read_students(p) for p in paths], ignore_index=True)


def figure_search(args, figures) -> None:
    if not args.student:
        raise BlockswapError("figure search needs --student (the selection JSON)")
    figures.search([Path(p) for p in args.inputs], Path(args.student), Path(args.out))


def figure_fisher_vs_error(args, figures) -> None:
    students, proxies = read_all_students(args.inputs), parse_pairs(args.proxies, "--proxies")
    figures.fisher_vs_error(correlation_table(students, proxies), students, proxies, Path(args.out))


# Figure kind -> drawer (args, the figures module, imported lazily: matplotlib is slow to load).
FIGURE_BUILDERS = {
    "pareto": lambda args, figures: figures.pareto(read_all_students(args.inputs), Path(args.out)),
    "search": figure_search,
    "random_students": lambda args, figures: figures.random_students(read_all_students(args.inputs), Path(args.out)),
    "fisher_vs_error": figure_fisher_vs_error,
}


def cmd_figure(args) -> None:
    from . import figures

    start = time.perf_counter()
    FIGURE_BUILDERS[args.kind](args, figures)
    png = Path(args.out).with_suffix(".png")
    write_sidecar(png, derived_record(args, [png, png.with_suffix(".pdf")], start))
    print(f"wrote {Path(args.out).with_suffix('.png')} and .pdf")


def add_figure(sub) -> None:
    p = sub.add_parser("figure", help="draw one of the paper's figures", description="Draw a figure (PNG and PDF): "
                       "pareto / random_students / fisher_vs_error from students CSVs, search from score CSVs.")
    p.add_argument("kind", choices=list(FIGURE_BUILDERS), help="which figure")
    p.add_argument("inputs", nargs="+", help="students CSVs (or, for search, score CSVs)")
    p.add_argument("--student", help="search: the selection JSON of the budget")
    p.add_argument("--proxies", action="append", metavar="BUDGET=PATH", help="fisher_vs_error: proxy scores")
    p.add_argument("--out", required=True, help="output PNG (a PDF is written beside it)")


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "data": (add_data, cmd_data),
    "blocks": (add_blocks, cmd_blocks),
    "cost": (add_cost, cmd_cost),
    "sample": (add_sample, cmd_sample),
    "score": (add_score, cmd_score),
    "select": (add_select, cmd_select),
    "pick": (add_pick, cmd_pick),
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
    "report": (add_report, cmd_report),
    "figure": (add_figure, cmd_figure),
}


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="blockswap", description="BlockSwap: Fisher-guided block substitution.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        COMMANDS[args.command][1](args)
    except BlockswapError as err:
        print(f"blockswap: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("blockswap: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
