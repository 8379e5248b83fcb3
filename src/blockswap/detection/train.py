"""Training a Mask R-CNN from scratch with torchvision's reference settings for Mask R-CNN
(pytorch/vision references/detection: 26 epochs, SGD momentum 0.9, lr 0.02 for 16 images per step,
weight decay 1e-4, lr x0.1 at epochs 16 and 22, linear warm-up from lr/1000 over the first 1000
iterations of the first epoch, horizontal flips), the lr scaled linearly with the batch size.

Resumable per epoch: after each epoch the weights, optimiser and the epoch reached are saved to
`checkpoint.pt`; a rerun continues from there. Several processes (torchrun, or `nproc` spawned
here) split each batch of images (DistributedSampler), with DDP over the gradients.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BlockswapError
from ..provenance import provenance, seal, write_json
from ..seeds import MAX_SEED, derive_seed
from ..training import distributed
from ..training.checkpoint import atomic_save, safe_load
from .coco import CocoDetection, horizontal_flip
from .model import build_detector, detector_cost

REFERENCE_LR = 0.02  # for REFERENCE_BATCH images per step (8 GPUs x 2 images)
REFERENCE_BATCH = 16
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
FORMAT = "blockswap-detector"


@dataclass
class DetectionTrainConfig:
    arch: str = "resnet-34"
    genotype: str = "G(N)"  # one block name for all blocks, or every block's name, space-separated
    data_dir: str = "data"
    epochs: int = 26
    batch_size: int = 16
    lr: float | None = None  # None: REFERENCE_LR * batch_size / REFERENCE_BATCH
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple = (16, 22)
    gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 1e-3
    min_size: int = 800
    max_size: int = 1333
    limit: int | None = None  # use only the first `limit` training images (miniature runs)
    seed: int = 0

    def __post_init__(self):
        self.milestones = tuple(self.milestones)
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr is None or (math.isfinite(self.lr) and self.lr > 0), f"lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"weight decay must be at least 0, got {self.weight_decay}",
            ),
            (all(isinstance(m, int) and m >= 1 for m in self.milestones), "milestones must be epochs from 1"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.warmup_iters >= 0, f"warm-up iterations must be at least 0, got {self.warmup_iters}"),
            (0 < self.warmup_factor <= 1, f"warm-up factor must be in (0, 1], got {self.warmup_factor}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be 0 to {MAX_SEED}, got {self.seed}"),
            (self.limit is None or self.limit >= 1, f"limit must be at least 1, got {self.limit}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BlockswapError(message)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else REFERENCE_LR * self.batch_size / REFERENCE_BATCH

    def lr_at(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """Step decay at the milestones; in epoch 0 a linear warm-up (as the reference's LinearLR)."""
        lr = self.base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        warmup = min(self.warmup_iters, steps_per_epoch - 1)
        if epoch == 0 and step < warmup:
            alpha = step / warmup
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr


def _same_settings(saved: dict, config: DetectionTrainConfig) -> bool:
    """Whether a saved file's settings are `config`'s (compared as JSON: tuples saved come back as such)."""
    return json.dumps(saved.get("config"), sort_keys=True) == json.dumps(asdict(config), sort_keys=True)


def _finished(out: Path, config: DetectionTrainConfig) -> bool:
    path = out / MODEL
    if not path.is_file():
        return False
    saved = safe_load(path, FORMAT)
    if not _same_settings(saved, config):
        raise BlockswapError(f"{path} was trained with other settings; remove {out} to train again")
    return True


def train_detector(
    config: DetectionTrainConfig, out: Path, device: torch.device, world: distributed.World | None = None, log=print
) -> None:
    out = Path(out)
    if _finished(out, config):
        log(f"{out / MODEL} is already trained; nothing to do")
        return
    rank, size = (world.rank, world.size) if world else (0, 1)
    if config.batch_size % size:
        raise BlockswapError(f"batch size {config.batch_size} does not split over {size} processes")
    data = CocoDetection(config.data_dir, "train", train=True, limit=config.limit)
    model = build_detector(config.arch, config.genotype, config.seed, config.min_size, config.max_size).to(device)
    cost = detector_cost(model, config.arch, config.genotype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.base_lr, momentum=config.momentum, weight_decay=config.weight_decay)
    start_epoch, history = 0, []
    checkpoint = out / CHECKPOINT
    if checkpoint.is_file():
        saved = safe_load(checkpoint, FORMAT)
        if not _same_settings(saved, config):
            raise BlockswapError(f"{checkpoint} belongs to other settings; remove it to start again")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch, history = saved["epoch"], saved["history"]
        log(f"resuming {out} after epoch {start_epoch}")
    net = model
    if world is not None and size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    per_rank = config.batch_size // size
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        # The epoch's image order and flips come from (seed, epoch) alone, so a resumed run equals
        # an uninterrupted one; each rank takes every size-th image of the shuffled order.
        rng = np.random.default_rng(derive_seed(config.seed, epoch))
        order = rng.permutation(len(data))
        flips = rng.random(len(data)) < 0.5
        steps = len(order) // config.batch_size or 1
        net.train()
        totals: dict = {}
        torch.manual_seed(derive_seed(config.seed, epoch, 1))
        for step in range(steps):
            chunk = order[step * config.batch_size : (step + 1) * config.batch_size][rank::size][:per_rank]
            images, targets = [], []
            for i in chunk:
                image, target = data[int(i)]
                if flips[i]:
                    image, target = horizontal_flip(image, target)
                images.append(image.to(device))
                targets.append({k: (v.to(device) if torch.is_tensor(v) else v) for k, v in target.items()})
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(epoch, step, steps)
            losses = net(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise BlockswapError(
                    f"the loss is {float(loss)} at epoch {epoch + 1}, step {step + 1}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach())
        history.append(
            {
                "epoch": epoch + 1,
                "lr": config.lr_at(epoch, steps - 1, steps),
                **{k: v / steps for k, v in totals.items()},
            }
        )
        if rank == 0:
            atomic_save(
                {
                    "format": FORMAT,
                    "config": asdict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                },
                checkpoint,
            )
        log(
            f"epoch {epoch + 1}/{config.epochs}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k.startswith("loss"))
        )
        if world is not None:
            distributed.barrier()
    if rank == 0:
        stamp = provenance(
            seed=config.seed, device=device, seconds=time.perf_counter() - started, config=asdict(config)
        )
        atomic_save(
            {
                "format": FORMAT,
                "config": asdict(config),
                "model": model.state_dict(),
                "cost": cost.as_dict(),
                "history": history,
            },
            out / MODEL,
        )
        seal(out / MODEL, {"provenance": stamp})
        write_json(
            out / "train.json",
            {
                "arch": config.arch,
                "genotype": config.genotype.split(),
                "cost": cost.as_dict(),
                "history": history,
                "provenance": stamp,
            },
        )
        checkpoint.unlink(missing_ok=True)


def _rank(world, device, config, out):
    train_detector(config, out, device, world, log=(print if world.rank == 0 else (lambda line: None)))


def train_detector_parallel(config: DetectionTrainConfig, out: Path, nproc: int, device: str = "auto") -> None:
    """One process (nproc 1, the default), torchrun's processes, or `nproc` spawned here."""
    world = distributed.world_from_env()
    kind = distributed.device_type(device)
    if world is not None:
        distributed.init_process_group(world, kind)
        try:
            train_detector(config, out, distributed.rank_device(kind, world), world)
        finally:
            distributed.destroy_process_group()
    elif nproc > 1:
        distributed.spawn(nproc, kind, _rank, config, Path(out))
    else:
        train_detector(config, out, torch.device(kind if kind != "cuda" else "cuda:0"))


def load_detector(path: Path):
    saved = safe_load(path, FORMAT)
    config = DetectionTrainConfig(**{k: v for k, v in saved["config"].items()})
    model = build_detector(config.arch, config.genotype, config.seed, config.min_size, config.max_size)
    model.load_state_dict(saved["model"])
    return model, config, saved
