"""Loading the frozen teacher a student is distilled from: a run of this package (its model.pt)
or a torchvision pretrained network (`torchvision:NAME[:WEIGHTS]`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..data.splits import Dataset
from ..errors import BlockswapError
from ..provenance import file_digest
from .checkpoint import MODEL_FILE, load_model


def is_pretrained_teacher(spec: str) -> bool:
    from ..networks.pretrained import (
        is_pretrained_spec,  # torchvision is imported only for such teachers
    )

    return is_pretrained_spec(spec)


def pretrained_teacher(spec: str, data: Dataset) -> tuple[nn.Module, dict]:
    from ..networks.pretrained import describe, load_pretrained_teacher

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
        from ..networks.pretrained import weights_path

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
