"""`blockswap detection search|train|evaluate`: the networks of the paper's Table 4 (docs/detection.md;
the table itself is `blockswap report table4`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..detection.coco import CocoDetection
from ..detection.evaluate import evaluate_detector
from ..errors import BlockswapError
from ..networks.blocks import CANDIDATE_SETS
from ..networks.genotype import Genotype
from ..provenance import input_digests, provenance, write_json
from ..seeds import seed_argument
from ..training.distributed import device_type


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {value}")
    return value


def _milestones(text: str) -> tuple:
    try:
        return tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs separated by commas, got {text[:40]!r}") from None


def _common(p, data=True):
    if data:
        p.add_argument("--data-dir", default="data", help="folder holding coco/{train2017,val2017,annotations}")
    p.add_argument("--min-size", type=_positive, default=800, help="shorter image side (torchvision: 800)")
    p.add_argument("--max-size", type=_positive, default=1333, help="longest image side (torchvision: 1333)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def add(sub):
    parser = sub.add_parser("detection", help="Table 4: Mask R-CNN on COCO with a BlockSwap backbone")
    steps = parser.add_subparsers(dest="detection_command", required=True, parser_class=type(parser))

    p = steps.add_parser("search", help="Fisher-rank backbone candidates on a COCO minibatch")
    _common(p)
    p.add_argument("--arch", default="resnet-34")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="released")
    p.add_argument(
        "--budget",
        type=_positive,
        default=None,
        help="backbone params at the band's centre (default: those of --reference)",
    )
    p.add_argument("--reference", default="G(N)", help="single-blocktype backbone setting the default budget")
    p.add_argument("--samples", type=_positive, default=1000)
    p.add_argument("--tolerance", type=_fraction, default=0.025)
    p.add_argument("--batch-size", type=_positive, default=16, help="COCO images in the minibatch")
    p.add_argument("--limit", type=_positive, default=None, help="draw the minibatch from the first N images")
    p.add_argument("--seed", type=seed_argument, default=0)
    p.add_argument("--candidates-out", required=True, help="CSV of every candidate and its Fisher potential")
    p.add_argument("--out", required=True, help="JSON of the winning backbone")

    p = steps.add_parser("train", help="train a Mask R-CNN from scratch (torchvision reference schedule)")
    _common(p)
    p.add_argument("--arch", default="resnet-34")
    p.add_argument("--genotype", default="G(N)", help="a block name, block names, or a genotype/search JSON")
    p.add_argument("--epochs", type=_positive, default=26)
    p.add_argument("--batch-size", type=_positive, default=16, help="images per step over all processes")
    p.add_argument("--lr", type=float, default=None, help="default: 0.02 x batch size / 16")
    p.add_argument("--milestones", type=_milestones, default=(16, 22))
    p.add_argument("--warmup-iters", type=int, default=1000)
    p.add_argument("--limit", type=_positive, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=seed_argument, default=0)
    p.add_argument("--nproc", type=_positive, default=1, help="processes (GPUs); torchrun's are used if set")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, model.pt, train.json")

    p = steps.add_parser("evaluate", help="COCOeval (bbox, segm) of a trained detector on val2017")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", required=True, help="model.pt of `blockswap detection train`")
    p.add_argument("--limit", type=_positive, default=None, help="the first N val images only")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE stored in the metrics")
    p.add_argument("--out", required=True, help="metrics JSON")


def _device(name: str):
    kind = device_type(name)
    return torch.device("cuda:0" if kind == "cuda" else kind)


def run(args):
    if args.detection_command == "evaluate":
        return _evaluate(args)
    if args.min_size > args.max_size:
        raise BlockswapError(f"--min-size {args.min_size} is more than --max-size {args.max_size}")
    from ..detection.model import check_arch  # torchvision: 1.5 s to import

    depth = check_arch(args.arch).depth
    if args.detection_command == "search":
        from ..detection.search import search_backbone  # torchvision: 1.5 s to import

        Genotype.from_spec(args.reference, depth)
        data = CocoDetection(args.data_dir, "train", train=True, limit=args.limit)
        record = search_backbone(
            data,
            Path(args.out),
            Path(args.candidates_out),
            args.arch,
            args.candidates,
            args.budget,
            args.reference,
            args.samples,
            args.tolerance,
            args.batch_size,
            args.seed,
            args.min_size,
            args.max_size,
            _device(args.device),
        )
        print(
            f"best of {args.samples}: candidate {record['candidate']} (fisher {record['fisher']:.6g}, "
            f"{record['cost']['backbone_params']} backbone params) -> {args.out}"
        )
        return
    from ..detection.train import DetectionTrainConfig, train_detector_parallel  # torchvision: 1.5 s

    genotype = str(Genotype.from_spec(args.genotype, depth))  # every block named: a file is read once, here
    config = DetectionTrainConfig(
        arch=args.arch,
        genotype=genotype,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        milestones=args.milestones,
        warmup_iters=args.warmup_iters,
        min_size=args.min_size,
        max_size=args.max_size,
        limit=args.limit,
        seed=args.seed,
    )
    from ..detection.model import backbone_spec  # torchvision: 1.5 s to import

    backbone_spec(config.arch, config.genotype)  # a genotype that does not fit is one line, now
    train_detector_parallel(config, Path(args.out), args.nproc, args.device)


def _evaluate(args):
    from ..detection.train import load_detector  # torchvision: 1.5 s to import

    tags = {}
    for tag in args.tag:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise BlockswapError(f"--tag takes KEY=VALUE, got {tag!r}")
        tags[key] = value
    start = time.perf_counter()
    model, config, saved = load_detector(Path(args.model))
    device = _device(args.device)
    data = CocoDetection(args.data_dir, "val", limit=args.limit)
    metrics = evaluate_detector(model.to(device), data, device, log=print)
    stamp = provenance(seed=config.seed, device=device, seconds=time.perf_counter() - start)
    stamp["inputs"] = input_digests([args.model])
    write_json(
        args.out,
        {
            "arch": config.arch,
            "genotype": config.genotype.split(),
            "cost": saved["cost"],
            "epochs": config.epochs,
            **metrics,
            "tags": tags,
            "provenance": stamp,
        },
    )
    print(f"box AP {metrics['bbox']['AP']:.1f}, mask AP {metrics['segm']['AP']:.1f} -> {args.out}")


COMMANDS = {"detection": (add, run)}
