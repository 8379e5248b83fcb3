"""Loading the frozen teacher a student is distilled from: a run of this package (its model.pt)
or a torchvision pretrained network (`torchvision:NAME[:WEIGHTS]`); and a pretrained teacher's test
error, recorded as a training run's metrics.json is."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..data.loader import evaluation_batches
from ..data.splits import Dataset
from ..errors import BlockswapError
from ..networks.pretrained import describe, load_pretrained_teacher
from ..networks.teacher_specs import is_pretrained_spec, weights_path
from ..provenance import file_digest, provenance
from .checkpoint import load_model
from .evaluation import EVAL_BATCH_SIZE, evaluate
from .run_files import MODEL_FILE


def is_pretrained_teacher(spec: str) -> bool:
    return is_pretrained_spec(spec)  # torchvision itself is imported only when such a teacher is built


def pretrained_teacher(spec: str, data: Dataset) -> tuple[nn.Module, dict]:
    # Checked: the class count (load_pretrained_teacher refuses a dataset without ImageNet's 1000
    # classes, the only data these weights can label). Not checked: the input size. torchvision's
    # ResNets are fully convolutional with adaptive pooling, so they run at any resolution, and
    # the student's images are the ones both networks see; the paper's ImageNet teacher is used
    # at whatever size the ImageNet protocol trains (224 px), and the miniature configs at less.
    teacher = load_pretrained_teacher(spec, data.num_classes, data.input_size)
    return teacher, {"kind": "pretrained", **describe(spec, data.input_size)}


def teacher_digest(spec: str) -> str:
    """The sha256 of the teacher's weights: its model.pt, or the pretrained weight file."""
    if is_pretrained_teacher(spec):
        path = weights_path(spec)
    else:
        path = Path(spec) / MODEL_FILE if Path(spec).is_dir() else Path(spec)
    try:
        return file_digest(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise BlockswapError(f"teacher {spec}: {path} does not exist") from None


def trained_teacher(spec: str, data: Dataset) -> tuple[nn.Module, dict]:
    teacher, record = load_model(spec)
    if record["num_classes"] != data.num_classes:
        raise BlockswapError(
            f"teacher {spec} has {record['num_classes']} classes but {data.name} has {data.num_classes}"
        )
    # Same class count is not enough: a teacher of another dataset labels other things, and one
    # trained at another image size has attention maps of other scales (our networks run at any
    # size, so nothing else would notice). model.pt records both (checkpoint.model_record).
    dataset, size = record.get("dataset"), record.get("input_size")
    if not isinstance(dataset, str) or not isinstance(size, list):
        raise BlockswapError(
            f"teacher {spec} does not record the dataset it was trained on; use a model.pt written by blockswap train"
        )
    if dataset != data.name or size != list(data.input_size):
        raise BlockswapError(
            f"teacher {spec} was trained on {dataset} at {'x'.join(map(str, size))} px but the student trains on "
            f"{data.name} at {'x'.join(map(str, data.input_size))} px; distil from a teacher trained on the "
            "student's dataset and image size"
        )
    return teacher, {
        "kind": "trained",
        "path": spec,
        "weights_sha256": teacher_digest(spec),
        "arch": record["arch"],
        "genotype": record["genotype"],
        "dataset": record["dataset"],
    }


# Kinds of teacher, tried in order: (claims the spec?, load it -> (module, record for metrics.json)).
TEACHER_SOURCES: list[tuple[Callable[[str], bool], Callable[[str, Dataset], tuple[nn.Module, dict]]]] = [
    (is_pretrained_teacher, pretrained_teacher),
    (lambda spec: True, trained_teacher),  # a folder or model.pt of one of our runs
]


def pretrained_metrics(spec: str, data, device) -> dict:
    """Test error of a pretrained teacher on `data` (a loaded blockswap Dataset), as a record shaped
    like a training run's metrics.json so that tables read it beside trained networks."""
    device = torch.device(device)
    teacher = load_pretrained_teacher(spec, data.num_classes, data.input_size).to(device)
    info = describe(spec, data.input_size)
    # The inputs its library trains it on: a folder's own statistics would feed it other numbers.
    data = replace(data, mean=tuple(info["mean"]), std=tuple(info["std"]))
    start = time.perf_counter()
    test = evaluate(teacher, evaluation_batches(data, "test", EVAL_BATCH_SIZE, device), device)
    seconds = time.perf_counter() - start
    stamp = provenance(seed=0, device=device, seconds=seconds)
    return {
        "test_error": test["top1_error"],
        "test_error_top5": test["top5_error"],
        "arch": info["arch"],
        "genotype": ["torchvision"],
        "params": info["params"],
        "macs": info["macs"],
        # The paper's ops convention (docs/paper.md s.5) is defined on our block structure; for a
        # torchvision network ops is reported as its MACs.
        "ops": info["macs"],
        "ops_convention": "macs",
        "dataset": data.name,
        "epochs": 0,
        "seed": 0,
        "teacher": None,
        "mode": "pretrained",
        "tags": {"method": "teacher", "network": "teacher"},
        "weights_sha256": info["weights_sha256"],
        "pretrained": info,
        "normalisation": {"mean": info["mean"], "std": info["std"]},
        "code_version": stamp["code_version"],
        "provenance": stamp,
    }
