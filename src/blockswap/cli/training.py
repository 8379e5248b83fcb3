"""`blockswap train` and `evaluate`: teachers and attention-transfer students (docs/paper.md s.4)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from ..data.loader import evaluation_batches
from ..data.loaders import load_dataset
from ..devices import DEVICE_HELP, resolve_device
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.genotype import Genotype
from ..networks.teacher_specs import is_pretrained_spec
from ..provenance import provenance, write_json
from ..seeds import seed_argument
from ..training.checkpoint import load_model
from ..training.config import CONFIG_FIELDS, PROTOCOLS, PRUNERS, SCHEDULES, TrainConfig
from ..training.distributed import (
    SINGLE,
    destroy_process_group,
    device_type,
    init_process_group,
    rank_device,
    world_from_env,
)
from ..training.evaluation import EVAL_BATCH_SIZE, evaluate
from ..training.multiprocess_training import train_parallel, train_rank
from ..training.run_files import METRICS_FILE
from ..training.step_capture import check_capturable
from ..training.teachers import is_pretrained_teacher, pretrained_metrics
from ..training.train import Trainer, train_together
from ..validation import load_yaml
from .data_options import add_data_options

# TrainConfig fields that are also flags (same name, dashes for underscores); a flag overrides the
# --config file, which overrides the --protocol preset.
TRAIN_FLAGS = (
    "epochs",
    "batch_size",
    "drop_last",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "milestones",
    "gamma",
    "cutout",
    "seed",
    "beta",
    "kd_alpha",
    "kd_temperature",
    "prune",
    "prune_params",
    "val_size",
    "image_size",
    "data_dir",
)


def milestones(text: str) -> list[int]:
    """'60,120,160' -> [60, 120, 160] (TrainConfig checks that they increase)."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole epochs separated by commas, e.g. 60,120,160, got {text!r}"
        ) from None


def train_config(args, genotype: str | None = None) -> TrainConfig:
    """The run's configuration from --protocol, --config and the flags; `genotype` (one of several
    students' --genotype) replaces args.genotype."""
    loaded = {}
    if args.config:
        path = Path(args.config)
        loaded = load_yaml(path, "training config") or {}
        if not isinstance(loaded, dict):
            raise BlockswapError(f"{path}: expected a mapping of hyperparameters")
        unknown = sorted(set(loaded) - CONFIG_FIELDS)
        if unknown:
            raise BlockswapError(
                f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(CONFIG_FIELDS))}"
            )
    protocol = args.protocol or loaded.get("protocol", "cifar")
    if protocol not in PROTOCOLS:
        raise BlockswapError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    values = {"arch": parse_arch(args.arch).name, "dataset": args.dataset, **PROTOCOLS[protocol], **loaded}
    values["protocol"] = protocol
    for name in TRAIN_FLAGS:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for flag in ("bf16", "channels_last", "compile", "cuda_graphs", "teacher_init"):
        values[flag] = values.get(flag, False) or getattr(args, flag)
    if args.teacher:
        # A torchvision spec is a name, not a path; a trained run is recorded by its absolute path.
        values["teacher"] = args.teacher if is_pretrained_teacher(args.teacher) else str(Path(args.teacher).resolve())
    spec = genotype or values.get("genotype")
    if spec is not None:
        arch = parse_arch(values["arch"])
        genotype = Genotype.from_data(spec) if isinstance(spec, list) else Genotype.from_spec(spec, arch.depth)
        values["genotype"] = genotype.names
    return TrainConfig(**values)


def search_tags(path: Path) -> dict:
    """A searched or picked genotype file (`blockswap select` / `pick`) carries the candidate's index
    and Fisher potential; they travel in the run's own metrics.json, so reports read no other file."""
    if path.suffix != ".json":
        return {}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # Genotype.load has already said what is wrong with a file that is used
    return {key: str(record[key]) for key in ("candidate", "fisher") if isinstance(record, dict) and key in record}


def parse_tags(items, name: str) -> dict:
    tags = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BlockswapError(f"{name} needs KEY=VALUE, got {item!r}")
        tags[key] = value
    return tags


def student_tags(args, count: int) -> list[dict]:
    """Every student's labels: --tag for all of them, --each-tag KEY=V1,V2,... one value each."""
    common = parse_tags(args.tag, "--tag")
    tags = [dict(common) for _ in range(count)]
    for key, values in parse_tags(args.each_tag, "--each-tag").items():
        parts = values.split(",")
        if len(parts) != count:
            raise BlockswapError(f"--each-tag {key} has {len(parts)} values for {count} students (one per --out)")
        for record, value in zip(tags, parts):
            record[key] = value
    for record, genotype in zip(tags, student_genotypes(args, count)):
        if genotype and Path(genotype).is_file():
            record.setdefault("genotype_file", genotype)
            record.update(search_tags(Path(genotype)))
    return tags


def student_genotypes(args, count: int) -> list[str | None]:
    """One genotype per --out: as many --genotype values as --out folders, or one (or none) for all."""
    genotypes = args.genotype or [None]
    if len(genotypes) not in (1, count):
        raise BlockswapError(f"{len(genotypes)} --genotype values for {count} --out folders; give one each, or one")
    return genotypes * count if len(genotypes) == 1 else genotypes


def cmd_train(args) -> None:
    if args.nproc < 1:
        raise BlockswapError(f"--nproc must be at least 1, got {args.nproc}")
    if len(args.out) > 1:
        train_lockstep(args)
        return
    config = train_config(args, student_genotypes(args, 1)[0])
    tags = student_tags(args, 1)[0]
    world = world_from_env()
    processes = world.size if world is not None else args.nproc
    if processes > 1:  # before any process starts: one line, not one per rank
        check_capturable(config, torch.device(device_type(args.device)), processes)
    if world is not None and world.size > 1:  # one rank of a torchrun launch
        if args.nproc not in (1, world.size):
            raise BlockswapError(f"--nproc {args.nproc} contradicts torchrun's WORLD_SIZE={world.size}; leave it out")
        kind = device_type(args.device)
        init_process_group(world, kind)
        try:
            train_rank(world, rank_device(kind, world), config, Path(args.out[0]), None, not args.quiet, tags)
        finally:
            destroy_process_group()
    elif args.nproc > 1:
        train_parallel(config, Path(args.out[0]), args.nproc, args.device, progress=not args.quiet, tags=tags)
    else:
        trainer = Trainer(
            config,
            Path(args.out[0]),
            resolve_device(args.device),
            progress=not args.quiet,
            log=lambda line: print(line, flush=True),
            tags=tags,
        )
        trainer.run()


def train_lockstep(args) -> None:
    """Several students (one --out each) in one process, on the same minibatches, the teacher's
    outputs computed once per step (training/lockstep.py)."""
    if args.nproc != 1 or (world_from_env() or SINGLE).size > 1:
        raise BlockswapError("several --out folders train in lockstep in one process; leave out --nproc and torchrun")
    configs = [train_config(args, genotype) for genotype in student_genotypes(args, len(args.out))]
    tags = student_tags(args, len(args.out))
    device = resolve_device(args.device)
    lead = configs[0]
    data = load_dataset(lead.dataset, lead.data_dir, lead.image_size, lead.val_size)
    trainers, teacher = [], None
    for config, out, labels in zip(configs, args.out, tags):
        trainer = Trainer(
            config,
            Path(out),
            device,
            data,
            progress=False,
            log=lambda line: print(line, flush=True),
            tags=labels,
            teacher=teacher,
        )
        teacher = teacher or ((trainer.teacher, trainer.teacher_record) if trainer.teacher is not None else None)
        trainers.append(trainer)
    train_together(trainers)


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a teacher, or distil a student with attention transfer",
        description="Train ARCH from scratch, or with --teacher distil it with CE + attention transfer "
        "(docs/paper.md s.4). Rerunning resumes; a finished run is not retrained.",
    )
    p.add_argument("--arch", required=True, help="wrn-D-K, resnet-18 or resnet-34")
    p.add_argument(
        "--genotype",
        nargs="+",
        help="genotype file, name list, or one block name (default: all S); with several --out folders, one "
        "per folder (or one for all)",
    )
    add_data_options(p, required=True, data_dir_default=None)
    p.add_argument(
        "--out",
        required=True,
        nargs="+",
        help="output folder: model.pt, metrics.json, history.csv. Several folders train several students "
        "in lockstep: one process, the same minibatches, the teacher's outputs computed once per step; each "
        "has its own seed-derived weights, optimiser, checkpoint and results, and resumes on its own",
    )
    p.add_argument(
        "--teacher",
        help="trained teacher (folder or model.pt), or torchvision:NAME[:weights.pth] "
        "(e.g. torchvision:resnet34, pretrained): distil with attention transfer",
    )
    p.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="hyperparameter preset: cifar (the paper's CIFAR-10 protocol, default) or imagenet",
    )
    p.add_argument("--config", help="YAML file of hyperparameters (TrainConfig fields); flags override it")
    p.add_argument("--epochs", type=int, help="epochs (paper: 200)")
    p.add_argument("--batch-size", type=int, help="global minibatch size, shared by all processes (paper: 128)")
    p.add_argument(
        "--drop-last",
        action="store_true",
        default=None,
        help="drop each epoch's last, partial batch (the paper's code keeps it)",
    )
    p.add_argument("--lr", type=float, help="initial learning rate (paper: 0.1)")
    p.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    p.add_argument("--weight-decay", type=float, help="weight decay (paper: 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, help="cosine (per epoch, to 0) or step (x gamma at milestones)")
    p.add_argument(
        "--milestones",
        type=milestones,
        help="step schedule: epochs at which lr is multiplied by gamma (default 60,120,160; ImageNet 30,60,90)",
    )
    p.add_argument("--gamma", type=float, help="step schedule: decay factor (default 0.2; ImageNet 0.1)")
    p.add_argument(
        "--cutout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Cutout after normalisation (default on; the ImageNet preset turns it off)",
    )
    p.add_argument("--seed", type=seed_argument, help="seeds initialisation, data order and augmentation (0 to 2^32-1)")
    p.add_argument(
        "--beta",
        type=float,
        help="attention-transfer weight per point (default: the paper's, 1000 at "
        "32 px or 750 at 224 px for ImageNet, times (image size / that size)^2)",
    )
    p.add_argument(
        "--teacher-init",
        action="store_true",
        help="copy a pretrained teacher's stem, and the blocks the genotype keeps as its own (T, T(b)), into the "
        "student first (the student has the teacher's skeleton; docs/compress.md)",
    )
    p.add_argument("--kd-alpha", type=float, help="Hinton KD weight, 0 = off (the paper uses none)")
    p.add_argument("--kd-temperature", type=float, help="KD temperature")
    p.add_argument(
        "--prune",
        choices=sorted(PRUNERS),
        help="prune at initialisation (snip: SNIP connection "
        "saliency on one minibatch, global top-k; masks fixed through training)",
    )
    p.add_argument(
        "--prune-params", type=int, help="with --prune: parameters left (the classifier, BN and biases included)"
    )
    p.add_argument("--val-size", type=int, help="training images held out for validation")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (one GPU each on "
        "CUDA, gloo on the CPU); the result does not depend on it. Under torchrun, leave it out",
    )
    p.add_argument("--bf16", action="store_true", help="fast mode: bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="fast mode: NHWC memory layout")
    p.add_argument("--compile", action="store_true", help="fast mode: torch.compile")
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="CUDA: replay each training step from a CUDA graph, lockstep students on their own streams "
        "(float32, one process)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines remain)")
    p.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="label stored in metrics.json (e.g. method=blockswap); does not affect training",
    )
    p.add_argument(
        "--each-tag",
        action="append",
        metavar="KEY=V1,V2,...",
        help="with several --out folders: a label with one value per folder, in their order",
    )


def cmd_evaluate(args) -> None:
    device = resolve_device(args.device)
    if is_pretrained_spec(args.model):
        evaluate_pretrained(args, device)
        return
    model, record = load_model(args.model)
    dataset = args.dataset or record["dataset"]
    image_size = args.image_size or (record["input_size"][0] if dataset in ("digits", "folder") else None)
    data = recorded_normalisation(load_dataset(dataset, args.data_dir, image_size, 0), Path(args.model))
    if data.num_classes != record["num_classes"]:
        raise BlockswapError(
            f"{args.model} predicts {record['num_classes']} classes but {dataset} has {data.num_classes}"
        )
    model.to(device)
    result = evaluate(model, evaluation_batches(data, "test", EVAL_BATCH_SIZE, device), device)
    if result["non_finite"]:
        # argmax of nan logits picks class 0: the error would look like a poorly trained network's.
        raise BlockswapError(
            f"{args.model} gives non-finite outputs for {result['non_finite']} test images, so it "
            "has no meaningful test error; its weights diverged or are damaged: train it again"
        )
    summary = {
        "model": str(args.model),
        "dataset": dataset,
        "test_error": result["top1_error"],
        "test_error_top5": result["top5_error"],
    }
    if args.out:
        write_json(args.out, {**summary, "provenance": provenance(device=device)})
    print(json.dumps(summary))


def recorded_normalisation(data, model: Path):
    """`data` normalised as the run's metrics.json records it was trained (a pretrained teacher's
    normalisation, say), or as it is."""
    metrics = (model if model.is_dir() else model.parent) / METRICS_FILE
    try:
        recorded = json.loads(metrics.read_text()).get("normalisation")
    except (OSError, ValueError, AttributeError):
        return data
    if not isinstance(recorded, dict):
        return data
    return replace(data, mean=tuple(recorded["mean"]), std=tuple(recorded["std"]))


def evaluate_pretrained(args, device) -> None:
    """A pretrained torchvision or timm teacher's test error (on inputs normalised as its library
    trains them), written as a teacher's metrics.json (the workflow's teacher row when
    `teacher.pretrained` is set)."""
    if not args.dataset:
        raise BlockswapError(f"{args.model}: give --dataset (a pretrained teacher was trained on none of ours)")
    data = load_dataset(args.dataset, args.data_dir, args.image_size, 0)
    metrics = pretrained_metrics(args.model, data, device)
    if args.out:
        write_json(args.out, metrics)
    print(json.dumps({key: metrics[key] for key in ("test_error", "test_error_top5", "params", "dataset")}))


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test error of a trained model", description="Recompute test error.")
    p.add_argument("model", help="a training folder or its model.pt, or torchvision:NAME[:FILE] / timm:NAME:FILE")
    add_data_options(p, default_from="the model's")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", help="also write the result as JSON here (a pretrained teacher: a metrics.json)")


COMMANDS = {
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
}
