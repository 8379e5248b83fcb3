"""Training a teacher from scratch, or a student with attention transfer from a frozen teacher.

The protocol defaults are the paper's (PAPER.md s.4): SGD momentum 0.9, lr 0.1 cosine-annealed
per epoch to 0, batch 128, weight decay 5e-4, crop + flip + Cutout. `PROTOCOLS["imagenet"]` is the
ImageNet one. A checkpoint is written atomically after every epoch; running the same configuration
again resumes from it (every epoch's data order and augmentation come from a seed derived from
(seed, epoch), so a resumed run equals an uninterrupted one on CPU), and a finished run is not
trained again. The reported number is the final epoch's test error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import CHECKPOINT_FORMAT, MODEL_FILE, atomic_save, load_model, safe_load, save_model
from .datasets import Dataset, epoch_batches, evaluation_batches, load_dataset
from .distillation import check_compatible, distillation_loss
from .errors import BlockswapError
from .models import build_model
from .provenance import atomic_write_text, provenance, write_json
from .seeds import derive_seed

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SCHEDULES = ("cosine", "step")
EVAL_BATCH_SIZE = 512  # evaluation only: larger batches, same numbers


@dataclass
class TrainConfig:
    arch: str
    dataset: str
    genotype: Optional[list] = None  # paper names, one per block; None = all S
    data_dir: str = "data"
    image_size: Optional[int] = None
    val_size: int = 0  # training images held out for validation (CIFAR/SVHN); digits has its own
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine: to 0 over the run, stepped per epoch; step: x gamma every step_size
    step_size: int = 30
    gamma: float = 0.1
    cutout: bool = True
    seed: int = 0
    teacher: Optional[str] = None  # folder or model.pt of a trained teacher: distil with AT
    beta: float = 1000.0  # AT weight per point
    kd_alpha: float = 0.0  # Hinton KD weight (0 = off, as in the paper)
    kd_temperature: float = 4.0
    bf16: bool = False  # fast mode (CUDA): bf16 autocast
    channels_last: bool = False  # fast mode: NHWC layout
    compile: bool = False  # fast mode: torch.compile

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (0 <= self.kd_alpha <= 1, f"kd alpha must be between 0 and 1, got {self.kd_alpha}"),
            (self.kd_temperature > 0, f"kd temperature must be positive, got {self.kd_temperature}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BlockswapError(message)

    @property
    def mode(self) -> str:
        return "fast" if (self.bf16 or self.channels_last or self.compile) else "paper"

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# Protocol presets: values that differ from the dataclass defaults (the CIFAR protocol).
PROTOCOLS = {
    "cifar": {},
    "imagenet": dict(epochs=100, batch_size=256, weight_decay=1e-4, schedule="step", step_size=30, beta=750.0,
                     cutout=False),
}
CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


def make_scheduler(optimiser, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs, eta_min=0.0)
    return torch.optim.lr_scheduler.StepLR(optimiser, step_size=config.step_size, gamma=config.gamma)


@torch.no_grad()
def evaluate(model, batches, device, bf16: bool = False) -> dict:
    """Top-1 and top-5 error (%) over `batches`, BN in eval mode."""
    model.eval()
    top1 = top5 = total = 0
    for images, labels in batches:
        with autocast(device, bf16):
            logits = model(images)
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        top1 += int((best[:, 0] == labels).sum())
        top5 += int((best == labels[:, None]).any(dim=1).sum())
        total += len(labels)
    if total == 0:
        raise BlockswapError("the evaluation split is empty")
    return {"top1_error": 100.0 * (1 - top1 / total), "top5_error": 100.0 * (1 - top5 / total)}


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class Trainer:
    def __init__(self, config: TrainConfig, out: Path, device: torch.device, data: Optional[Dataset] = None,
                 progress: bool = True, log=print, tags: Optional[dict] = None):
        self.config, self.out, self.device, self.progress, self.log = config, Path(out), device, progress, log
        self.tags = dict(tags or {})  # labels for reports (method, budget, ...); not part of the fingerprint
        if config.bf16 and device.type != "cuda":
            raise BlockswapError("--bf16 needs a CUDA device (fast mode is for GPUs)")
        self.data = data or load_dataset(config.dataset, config.data_dir, config.image_size, config.val_size)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = build_model(config.arch, config.genotype, self.data.num_classes, seed=config.seed)
        self.model.to(device, memory_format=self.memory_format)
        self.teacher = self._load_teacher() if config.teacher else None
        self.optimiser = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.scheduler = make_scheduler(self.optimiser, config)
        self.step_model = torch.compile(self.model) if config.compile else self.model

    def _load_teacher(self):
        teacher, record = load_model(self.config.teacher)
        if record["num_classes"] != self.data.num_classes:
            raise BlockswapError(
                f"teacher {self.config.teacher} has {record['num_classes']} classes but {self.data.name} has "
                f"{self.data.num_classes}"
            )
        teacher.to(self.device, memory_format=self.memory_format).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    # --- state ----------------------------------------------------------------------------------

    def _checkpoint(self, epoch: int, history: list, elapsed: float) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.config.fingerprint(),
            "config": asdict(self.config),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": history,
            "elapsed": elapsed,
        }

    def _resume(self) -> tuple[int, list, float]:
        path = self.out / CHECKPOINT_FILE
        if not path.exists():
            return 0, [], 0.0
        state = safe_load(path, CHECKPOINT_FORMAT)
        if state.get("fingerprint") != self.config.fingerprint():
            raise BlockswapError(
                f"{path} belongs to a different configuration; use another --out folder or delete it to start afresh"
            )
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.log(f"resuming {self.out} after epoch {state['epoch']}")
        return state["epoch"], list(state["history"]), float(state["elapsed"])

    def finished(self) -> Optional[dict]:
        path = self.out / METRICS_FILE
        if not path.exists():
            return None
        metrics = json.loads(path.read_text())
        if metrics.get("fingerprint") != self.config.fingerprint():
            raise BlockswapError(
                f"{self.out} holds a finished run of a different configuration; use another --out folder or delete it"
            )
        return metrics

    # --- loop -----------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict:
        config, model = self.config, self.step_model
        model.train()
        batches = epoch_batches(self.data, config.batch_size, derive_seed(config.seed, epoch), self.device, config.cutout)
        loss_sum = wrong = seen = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not self.progress, leave=False,
                   total=len(batches) if hasattr(batches, "__len__") else None)
        for images, labels in bar:
            images = images.contiguous(memory_format=self.memory_format)
            with autocast(self.device, config.bf16):
                if self.teacher is None:
                    logits = model(images)
                    loss = F.cross_entropy(logits, labels)
                else:
                    out = self.model.forward_intermediates(images)
                    with torch.no_grad():
                        target = self.teacher.forward_intermediates(images)
                    if seen == 0:
                        check_compatible(out.stages, target.stages)
                    logits = out.logits
                    loss = distillation_loss(logits, labels, out.stages, target.logits, target.stages, config.beta,
                                             config.kd_alpha, config.kd_temperature)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            n = len(labels)
            loss_sum += float(loss.detach()) * n
            wrong += float((logits.argmax(1) != labels).sum())
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", err=f"{100 * wrong / seen:.1f}%")
        return {"train_loss": loss_sum / seen, "train_error": 100 * wrong / seen}

    def run(self) -> dict:
        done = self.finished()
        if done is not None:
            self.log(f"{self.out} is already trained (test error {done['test_error']:.2f}%); nothing to do")
            return done
        self.out.mkdir(parents=True, exist_ok=True)
        start_epoch, history, elapsed = self._resume()
        for epoch in range(start_epoch, self.config.epochs):
            start = time.perf_counter()
            lr = self.optimiser.param_groups[0]["lr"]
            row = {"epoch": epoch + 1, **self.train_epoch(epoch), "lr": lr}
            if self.data.val is not None:
                val = evaluate(self.model, evaluation_batches(self.data, "val", EVAL_BATCH_SIZE, self.device),
                               self.device, self.config.bf16)
                row["val_error"] = val["top1_error"]
            self.scheduler.step()
            row["seconds"] = time.perf_counter() - start
            elapsed += row["seconds"]
            history.append(row)
            atomic_save(self._checkpoint(epoch + 1, history, elapsed), self.out / CHECKPOINT_FILE)
            val_text = f" val err {row['val_error']:.2f}%" if "val_error" in row else ""
            self.log(f"epoch {epoch + 1}/{self.config.epochs}: loss {row['train_loss']:.4f} "
                     f"train err {row['train_error']:.2f}%{val_text} lr {lr:.4g} ({row['seconds']:.1f}s)")
        return self._finish(history, elapsed)

    def _finish(self, history: list, elapsed: float) -> dict:
        test = evaluate(self.model, evaluation_batches(self.data, "test", EVAL_BATCH_SIZE, self.device),
                        self.device, self.config.bf16)
        cost = self.model.spec.cost(self.data.input_size)  # exact, from the genotype (no forward pass)
        stamp = provenance(seed=self.config.seed, device=self.device, seconds=elapsed)
        save_model(self.model, self.out / MODEL_FILE, self.data.input_size, self.data.name)
        atomic_write_text(self.out / HISTORY_FILE, pd.DataFrame(history).to_csv(index=False))
        metrics = {
            "test_error": test["top1_error"],
            "test_error_top5": test["top5_error"],
            "arch": self.model.spec.arch.name,
            "genotype": self.model.spec.genotype.names,
            **cost.as_dict(),
            "dataset": self.data.name,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "teacher": self.config.teacher,
            "mode": self.config.mode,
            "tags": self.tags,
            "fingerprint": self.config.fingerprint(),
            "hyperparameters": asdict(self.config),
            "code_version": stamp["code_version"],
            "provenance": stamp,
        }
        write_json(self.out / METRICS_FILE, metrics)
        (self.out / CHECKPOINT_FILE).unlink(missing_ok=True)
        self.log(f"finished: test error {test['top1_error']:.2f}% (top-5 {test['top5_error']:.2f}%) -> {self.out}")
        return metrics
