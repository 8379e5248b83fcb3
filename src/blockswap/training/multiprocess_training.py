"""Training on N processes: one rank's run, and spawning N local ranks to train together. The
process machinery (groups, spawn, ranks, global batch norm) and how a run stays one run whatever
N is are in distributed.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.loaders import load_dataset
from ..data.splits import Dataset
from . import distributed
from .config import TrainConfig
from .distributed import World
from .run_files import METRICS_FILE
from .runs import finished_run
from .train import Trainer


def train_rank(
    world: World,
    device: torch.device,
    config: TrainConfig,
    out: Path,
    data: Dataset | None,
    progress: bool,
    tags: dict | None,
) -> None:
    """One rank of a data-parallel run (a spawned process, or one launched by torchrun)."""
    Trainer(
        config, out, device, data, progress=progress, log=lambda line: print(line, flush=True), tags=tags, world=world
    ).run()


def train_parallel(
    config: TrainConfig,
    out: Path,
    nproc: int,
    device: str = "auto",
    data: Dataset | None = None,
    progress: bool = True,
    tags: dict | None = None,
) -> dict:
    """Train on `nproc` local processes (one GPU each on CUDA, gloo on the CPU) and return rank 0's
    metrics. The result equals a one-process run of the same config, to float rounding."""
    kind = distributed.device_type(device)
    done = finished_run(config, Path(out))
    if done is None:
        # Loaded once here, so a missing dataset is one error before any process starts.
        data = data or load_dataset(config.dataset, config.data_dir, config.image_size, config.val_size)
        distributed.spawn(nproc, kind, train_rank, config, Path(out), data, progress, tags)
        done = json.loads((Path(out) / METRICS_FILE).read_text())
    else:
        print(f"{out} is already trained (test error {done['test_error']:.2f}%); nothing to do", flush=True)
    return done
