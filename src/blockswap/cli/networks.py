"""`blockswap blocks`, `cost` and `data`: the block zoo, a network's cost, a dataset's splits."""

from __future__ import annotations

import json
import time

from ..data.datasets import dataset_info
from ..networks.architectures import NetworkSpec, parse_arch
from ..networks.blocks import CANDIDATE_SETS, FAMILIES, WRAPPERS, parse_block
from ..networks.genotype import Genotype
from ..provenance import provenance, write_json
from .data_options import add_data_options

# In the zoo, in no candidate set: a Table 2 baseline, and a pretrained ResNet's own blocks (kept, not drawn).
EXTRA_TYPES = ("MBConv(6)", "T", "T(4)")


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
        wrapper = WRAPPERS[family.wrapper].description
        rows.append((t.name, t.released_name or "-", t.family, wrapper, sets, family.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def cmd_cost(args) -> None:
    arch = parse_arch(args.arch)
    input_size, classes = dataset_info(args.dataset).network_input(args.image_size, args.data_dir)
    genotype = Genotype.from_spec(args.genotype, arch.depth) if args.genotype else None
    spec = NetworkSpec.create(arch, genotype, classes)
    result = {"arch": arch.name, "genotype": spec.genotype.names, **spec.cost(input_size).as_dict()}
    if args.out:
        record = {"name": args.name, "method": args.method, **result, "dataset": args.dataset}
        record.update(input_size=list(input_size), num_classes=classes)
        write_json(args.out, {**record, "provenance": provenance()})
    print(json.dumps(result))


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
    add_data_options(p, default="cifar10")
    p.add_argument("--out", help="also write the result, with provenance, to this JSON file")
    p.add_argument("--name", help="label recorded in --out (e.g. teacher, moonshine-gn4)")
    p.add_argument("--method", help="method recorded in --out (teacher, blockswap, moonshine, reduced)")


def cmd_data(args) -> None:
    from ..data.loaders import load_dataset  # torch: `blocks` and `cost`, in this module too, need none

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
    add_data_options(p, required=True, download=True)
    p.add_argument("--val-size", type=int, default=0, help="training images held out for validation")
    p.add_argument("--out", help="also write the summary, with provenance, to this JSON file")


COMMANDS = {
    "blocks": (add_blocks, cmd_blocks),
    "cost": (add_cost, cmd_cost),
    "data": (add_data, cmd_data),
}
