"""`blockswap train` and `evaluate`: teachers and attention-transfer students (PAPER.md s.4)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..checkpoint import load_model
from ..datasets import evaluation_batches, load_dataset
from ..devices import DEVICE_HELP, resolve_device
from ..errors import BlockswapError
from ..genotype import Genotype
from ..models import parse_arch
from ..train import CONFIG_FIELDS, EVAL_BATCH_SIZE, PROTOCOLS, SCHEDULES, TrainConfig, Trainer, evaluate


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
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
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
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


COMMANDS = {
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
}
