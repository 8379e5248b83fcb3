"""The `blockswap` command. Each subcommand is a function registered in `COMMANDS`.

A user's mistake (`BlockswapError`, or a bad argument) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Optional

from .blocks import CANDIDATE_SETS, FAMILIES, parse_block
from .datasets import dataset_info, load_dataset
from .errors import BlockswapError
from .genotype import Genotype
from .models import NetworkSpec, parse_arch
from .provenance import atomic_write_text, provenance
from .report import REPORTS, write_table

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
        atomic_write_text(args.out, json.dumps({**record, "provenance": provenance()}, indent=2) + "\n")
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
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary))


def add_data(sub) -> None:
    p = sub.add_parser(
        "data",
        help="check (and optionally download) a dataset",
        description="Load a dataset, print its splits and normalisation; with --download fetch it first.",
    )
    p.add_argument("--dataset", required=True, help="digits, cifar10, cifar100, svhn or imagenet")
    p.add_argument("--data-dir", default="data", help="folder holding the dataset files (default: data)")
    p.add_argument("--image-size", type=int, help="digits only: side of the resized images")
    p.add_argument("--val-size", type=int, default=0, help="training images held out for validation")
    p.add_argument("--download", action="store_true", help="download missing files when the network allows")
    p.add_argument("--out", help="also write the summary, with provenance, to this JSON file")


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


def cmd_report(args) -> None:
    table = REPORTS[args.kind](args.inputs)
    write_table(table, args.csv, args.md)
    print(f"wrote {len(table)} rows to {args.csv}")


def add_report(sub) -> None:
    p = sub.add_parser("report", help="assemble a table from result files", description="Assemble a table.")
    p.add_argument("kind", choices=sorted(REPORTS), help="which table")
    p.add_argument("inputs", nargs="+", help="result files (JSON)")
    p.add_argument("--csv", required=True, help="output CSV")
    p.add_argument("--md", help="also write a Markdown table here")


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "data": (add_data, cmd_data),
    "blocks": (add_blocks, cmd_blocks),
    "cost": (add_cost, cmd_cost),
    "report": (add_report, cmd_report),
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
