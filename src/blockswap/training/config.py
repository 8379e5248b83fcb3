"""A training run's settings: `TrainConfig` (validated on creation, fingerprinted for resume), the
protocol presets of the paper (CIFAR and ImageNet) and the learning-rate schedules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch

from ..errors import BlockswapError
from ..numeric import is_finite_number
from ..provenance import json_digest
from ..seeds import MAX_SEED
from . import snip
from .distillation import PAPER_BETA

# Pruning at initialisation: name -> (model, images, labels of one training minibatch, parameters
# to keep) -> {parameter name: 0/1 mask}.
PRUNERS: dict[str, Callable[..., dict]] = {"snip": snip.snip_masks}


def cosine_lr(config: TrainConfig, epoch: int) -> float:
    """The paper's: annealed per epoch from lr to 0 over the run (closed form)."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))


def step_lr(config: TrainConfig, epoch: int) -> float:
    """lr times gamma for every milestone reached (epochs counted from 0, as MultiStepLR does)."""
    return config.lr * config.gamma ** sum(m <= epoch for m in config.milestones)


# Learning rate of each epoch (0-based) per schedule; a function of the epoch, so nothing to resume.
SCHEDULES: dict[str, Callable[[TrainConfig, int], float]] = {"cosine": cosine_lr, "step": step_lr}


def is_whole(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


# Real-valued fields (None allowed for the optional ones): an inf or nan lr, weight decay or AT
# weight trains to NaN, and a string from a YAML file would fail a comparison with a traceback.
REAL_FIELDS = ("lr", "momentum", "weight_decay", "gamma", "beta", "kd_alpha", "kd_temperature")
OPTIONAL_FIELDS = {"beta"}
WHOLE_FIELDS = ("epochs", "batch_size")
FLOAT32_MAX = torch.finfo(torch.float32).max


@dataclass
class TrainConfig:
    arch: str
    dataset: str
    genotype: list | None = None  # paper names, one per block; None = all S
    data_dir: str = "data"
    image_size: int | None = None
    val_size: int = 0  # training images held out for validation (CIFAR/SVHN); digits has its own
    protocol: str = "cifar"  # whose paper values an automatic beta scales (PAPER_BETA)
    epochs: int = 200
    batch_size: int = 128  # the global batch, however many processes share it
    drop_last: bool = False  # the released code trains on the last, partial batch too
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine: to 0 over the run, stepped per epoch; step: x gamma at each milestone
    # Step schedule: Moonshine's / the arXiv-v1 CIFAR schedule (x0.2 at epochs 60, 120, 160).
    milestones: list = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    cutout: bool = True
    seed: int = 0
    teacher: str | None = None  # trained-run folder / model.pt, or torchvision:NAME[:weights]: distil with AT
    beta: float | None = None  # AT weight per point; None = the protocol's paper value scaled to the image size
    kd_alpha: float = 0.0  # Hinton KD weight (0 = off, as in the paper)
    kd_temperature: float = 4.0
    prune: str | None = None  # "snip": prune connections at initialisation, masks fixed through training
    prune_params: int | None = None  # parameters left after pruning (the classifier, BN and biases included)
    bf16: bool = False  # fast mode (CUDA): bf16 autocast
    channels_last: bool = False  # fast mode: NHWC layout
    compile: bool = False  # fast mode: torch.compile
    # CUDA only: capture each training step as a CUDA graph and give each lockstep student a stream
    # (training/step_capture.py); meant to replay the same kernels, so the mode stays as it is.
    cuda_graphs: bool = False
    # A pretrained teacher's stem and the blocks a student keeps as the teacher's own (T, T(b)) are
    # copied into the student before training (networks.pretrained.inherit_teacher_weights).
    teacher_init: bool = False
    # Input normalisation (per-channel mean and std of 0..1 pixels); None: a pretrained teacher's
    # (what its network was trained with), else the dataset's.
    mean: list | None = None
    std: list | None = None

    def __post_init__(self):
        # Types first: the range checks below compare, and nan passes no comparison silently but
        # inf passes "> 0".
        for name in REAL_FIELDS:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_FIELDS:
                continue
            if not is_finite_number(value):
                raise BlockswapError(f"{name.replace('_', ' ')} must be a finite number, got {value!r}")
            # The optimiser applies lr and weight decay in float32: beyond its range torch fails
            # mid-step with an overflow error.
            if abs(value) > FLOAT32_MAX:
                raise BlockswapError(
                    f"{name.replace('_', ' ')} must be within float32's range "
                    f"(at most {FLOAT32_MAX:.4g}), got {value!r}"
                )
        for name in WHOLE_FIELDS:
            if not is_whole(getattr(self, name)):
                raise BlockswapError(f"{name.replace('_', ' ')} must be a whole number, got {getattr(self, name)!r}")
        if isinstance(self.milestones, (tuple, list)):
            self.milestones = list(self.milestones)
        milestones_ok = (
            isinstance(self.milestones, list)
            and all(is_whole(m) and m >= 1 for m in self.milestones)
            and all(a < b for a, b in zip(self.milestones, self.milestones[1:]))
        )
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            # torch refuses a negative momentum with a bare ValueError; from 1 up the velocity never
            # decays and SGD diverges.
            (0 <= self.momentum < 1, f"momentum must be at least 0 and below 1, got {self.momentum}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (milestones_ok, f"milestones must be strictly increasing positive whole epochs, got {self.milestones!r}"),
            (self.gamma > 0, f"gamma must be positive, got {self.gamma}"),
            (self.protocol in PROTOCOLS, f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"),
            (self.beta is None or self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (0 <= self.kd_alpha <= 1, f"kd alpha must be between 0 and 1, got {self.kd_alpha}"),
            (self.kd_temperature > 0, f"kd temperature must be positive, got {self.kd_temperature}"),
            (
                self.prune is None or self.prune in PRUNERS,
                f"prune must be one of {', '.join(PRUNERS)}, got {self.prune!r}",
            ),
            (
                (self.prune is None) == (self.prune_params is None),
                "--prune and --prune-params go together: name the method and the parameters to keep",
            ),
            (
                is_whole(self.seed) and 0 <= self.seed <= MAX_SEED,
                f"seed must be a whole number from 0 to {MAX_SEED} (2^32-1), got {self.seed!r}",
            ),
            (
                self.prune_params is None or (is_whole(self.prune_params) and self.prune_params >= 1),
                f"prune params must be a positive whole number, got {self.prune_params!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise BlockswapError(message)
        self._check_normalisation()

    def _check_normalisation(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise BlockswapError("mean and std go together: give both (one value per colour channel) or neither")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
                setattr(self, name, value)
            if value is None:
                continue
            if not (isinstance(value, list) and len(value) == 3 and all(is_finite_number(v) for v in value)):
                raise BlockswapError(f"{name} must be three finite numbers (red, green, blue), got {value!r}")
        if self.std is not None and not all(v > 0 for v in self.std):
            raise BlockswapError(f"std must be positive, got {self.std!r}")

    @property
    def mode(self) -> str:
        return "fast" if (self.bf16 or self.channels_last or self.compile) else "paper"

    def fingerprint(self, teacher_digest: str | None = None) -> str:
        """What makes two runs the same run (resume, finished-run checks). The teacher enters by what
        it is, the sha256 of its weights (`teachers.teacher_digest`), not by where it lives: a moved
        project (another mount point after a requeue) resumes, and other weights at the same path
        are another run."""
        values = asdict(self)
        # Settings at which a run does what it does without them are left out of the digest, so a
        # run that does not use them keeps one fingerprint however many such settings there are.
        for name, default in NEUTRAL_DEFAULTS.items():
            if values[name] == default:
                del values[name]
        if self.teacher is not None:
            if teacher_digest is None:
                raise ValueError("a run with a teacher is fingerprinted with the teacher's weights digest")
            values["teacher"] = teacher_digest
        return json_digest(values)[:16]


NEUTRAL_DEFAULTS = {"teacher_init": False, "mean": None, "std": None, "cuda_graphs": False}


# Protocol presets: values that differ from the dataclass defaults (the CIFAR protocol). ImageNet:
# 100 epochs, lr /10 every 30, batch 256, wd 1e-4, no Cutout (docs/paper.md s.4); beta is automatic
# (750 at 224 px, PAPER_BETA).
PROTOCOLS = {
    "cifar": dict(protocol="cifar"),
    "imagenet": dict(
        protocol="imagenet",
        epochs=100,
        batch_size=256,
        weight_decay=1e-4,
        schedule="step",
        milestones=[30, 60, 90],
        gamma=0.1,
        cutout=False,
    ),
}
assert set(PROTOCOLS) == set(PAPER_BETA), "every protocol needs its paper beta"
CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}
