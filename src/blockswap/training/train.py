"""Training a teacher from scratch, or a student with attention transfer from a frozen teacher.

The story of one run, in the order this module tells it:

1. `Trainer.__init__` sets the run up: the data (data/), the network from its genotype and seed
   (networks/), the frozen teacher (teachers.py), SNIP's masks when pruning (snip.py), the SGD
   optimiser, and the step's module (data-parallel over processes: distributed.py).
2. `train_together` is the loop. `begin` skips a finished run or resumes its checkpoint; then per
   epoch `start_epoch` sets the learning rate, `train_pass` draws the epoch's seeded minibatches,
   runs the teacher once per minibatch and calls `train_step` (loss, backward, SGD step; the loss
   and error are summed on the device, tally.py), and `end_epoch` checks the loss and the weights,
   evaluates on the validation split and writes the checkpoint. Several students of one job share
   this loop (lockstep.py says which may); one run is a group of one. With `cuda_graphs` the
   teacher's forward pass and each step are replayed from CUDA graphs (step_capture.py).
3. `finish` evaluates on the test split once and writes model.pt, history.csv and metrics.json.

The protocol defaults are the paper's (docs/paper.md s.4): SGD momentum 0.9, lr 0.1 cosine-annealed
per epoch to 0, batch 128, weight decay 5e-4, crop + flip + Cutout, the last partial batch kept.
`PROTOCOLS["imagenet"]` is the ImageNet one. A checkpoint is written atomically after every epoch;
running the same configuration again resumes from it (every epoch's data order and augmentation
come from a seed derived from (seed, epoch), and the learning rate is a function of the epoch, so
a resumed run equals an uninterrupted one on CPU), and a finished run is not trained again. The
reported number is the final epoch's test error.

A run that diverges (a non-finite loss at any step, non-finite weights at an epoch's end, or
non-finite test outputs) stops with one line and is never marked finished; its last checkpoint is
the last finite network, so rerunning stops at the same place again. A finished run whose
metrics.json or model.pt is damaged is an error naming the file, never taken for finished.

Optional: SNIP pruning at initialisation (Table 2's SNIP rows: masks fixed through training) and
data-parallel training over several processes (`distributed.py`), which trains the same network
as one process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.loader import epoch_batches, evaluation_batches
from ..data.loaders import load_dataset
from ..data.splits import Dataset
from ..errors import BlockswapError
from ..locks import run_lock
from ..networks.architectures import parse_arch
from ..networks.models import build_model
from ..networks.pretrained import PretrainedTeacher, inherit_teacher_weights
from ..provenance import file_digest, provenance, write_json, write_result_text
from ..seeds import derive_seed
from ..validation import check_training_batches
from . import distributed, snip
from .checkpoint import CHECKPOINT_FORMAT, atomic_save, safe_load, save_model
from .config import PRUNERS, SCHEDULES, TrainConfig, is_whole
from .distillation import check_compatible, default_beta, distillation_loss
from .distributed import SINGLE, World
from .evaluation import EVAL_BATCH_SIZE, WithIntermediates, autocast, evaluate
from .lockstep import check_lockstep
from .run_files import HISTORY_FILE, METRICS_FILE, MODEL_FILE
from .runs import (
    CHECKPOINT_FILE,
    convergence,
    finished_run,
    non_finite_tensors,
)
from .step_capture import HeldBatch, Streams, check_capturable, stepper
from .tally import EpochSums, StepTally
from .teachers import TEACHER_SOURCES

PROGRESS_EVERY = 25  # steps between the progress bar's running loss and error (each a host sync)

# derive_seed(seed, 0, PRUNE_STREAM) seeds the SNIP minibatch: three parts, so it is no epoch's seed.
PRUNE_STREAM = 1


def train_together(trainers: Sequence) -> list[dict | None]:
    """Train (or resume) every run of `trainers` to the end on the same minibatches, computing the
    teacher's outputs (logits and attention maps) once per minibatch for all of them.

    Each run keeps its own seed (initial weights), optimiser, learning rate, checkpoint, metrics and
    history, and resumes on its own: a finished run is skipped, one resumed after epoch e joins from
    epoch e + 1. A run's numbers equal those of training it alone (`Trainer.run` is this with one
    run): its minibatches depend only on the shared seed and epoch, and the teacher's outputs on
    the minibatch. Returns the metrics of each run, in order (None on ranks other than 0).
    """
    check_lockstep(trainers)
    for t in trainers:
        t.lockstep = len(trainers)
    lead = trainers[0]
    config = lead.config
    with ExitStack() as locks:
        if lead.world.is_main:  # one lock per folder: the other ranks write nothing there
            for t in trainers:
                locks.enter_context(run_lock(t.out))
        todo = [t for t in trainers if t.begin() is not None]
        work = SharedWork(trainers)
        for epoch in range(min((t.start for t in todo), default=config.epochs), config.epochs):
            active = [t for t in todo if t.start <= epoch]
            for t in active:
                t.start_epoch(epoch)
            shared_seconds, steps = train_pass(active, epoch, work)
            for t in active:
                t.end_epoch(epoch, steps, shared_seconds / len(active))
        results = [t.finish() for t in trainers]
        distributed.barrier()  # the other ranks return once the results are written
    return results


class SharedWork:
    """What the runs of one job share besides the minibatches: the teacher's forward pass, and with
    `cuda_graphs` the held minibatch tensors, the captured teacher and one CUDA stream per run."""

    def __init__(self, trainers: Sequence):
        lead = trainers[0]
        capture = lead.config.cuda_graphs
        self.held = HeldBatch(lead.config.batch_size) if capture else None
        self.teacher = None
        if lead.teacher is not None:
            forward = partial(teacher_outputs, lead.teacher, lead.device, lead.config.bf16)
            self.teacher = stepper(forward, lead.device, capture)
        self.streams = Streams(lead.device, len(trainers), capture)
        self.index = {id(t): i for i, t in enumerate(trainers)}


def teacher_outputs(teacher: nn.Module, device: torch.device, bf16: bool, images: torch.Tensor):
    """The frozen teacher's logits and attention points for a minibatch."""
    with torch.no_grad(), autocast(device, bf16):
        return teacher.forward_intermediates(images)


def train_pass(active: Sequence, epoch: int, shared: SharedWork) -> tuple[float, int]:
    """One epoch's minibatches through every run of `active` (each after its `start_epoch`): the
    seconds spent on what they share (drawing the minibatches, the teacher) and the step count."""
    lead = active[0]
    config = lead.config
    start, own = time.perf_counter(), 0.0
    batches = epoch_batches(
        lead.data,
        config.batch_size,
        derive_seed(config.seed, epoch),
        lead.device,
        config.cutout,
        drop_last=config.drop_last,
        shard=lead.world.shard,
    )
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not lead.progress, leave=False)
    with shared.streams.pass_on_job_stream():
        for step, (images, labels) in enumerate(bar):
            images = images.contiguous(memory_format=lead.memory_format)
            held = False
            if shared.held is not None:
                images, labels, held = shared.held.hold(images, labels)
            target = shared.teacher(images, held=held) if shared.teacher is not None else None
            steps_start = time.perf_counter()
            for t in active:
                with shared.streams.on(shared.index[id(t)]):
                    t.train_step(epoch, step, len(batches), images, labels, target, held)
            shared.streams.join()
            own += time.perf_counter() - steps_start  # the students' own steps: not shared time
            if lead.progress and (step % PROGRESS_EVERY == 0 or step == len(batches) - 1):
                bar.set_postfix(lead.running_means())  # a host sync: not every step
    return time.perf_counter() - start - own, len(batches)


def normalised(data: Dataset, config: TrainConfig, teacher_record: dict | None) -> Dataset:
    """`data` normalised as `config` says: its own mean and std, a pretrained teacher's (the inputs
    its network was trained on: a user's images are fed to it as its library feeds them), or none."""
    if config.mean is not None:
        mean, std = config.mean, config.std
    elif teacher_record and teacher_record.get("kind") == "pretrained":
        mean, std = teacher_record["mean"], teacher_record["std"]
    else:
        return data
    return replace(data, mean=tuple(mean), std=tuple(std))


class Trainer:
    """One run: its network, teacher, optimiser, checkpoint and history, and the steps the loop of
    `train_together` calls (`begin`, `start_epoch`, `train_step`, `end_epoch`, `finish`)."""

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        device: torch.device,
        data: Dataset | None = None,
        progress: bool = True,
        log=print,
        tags: dict | None = None,
        world: World = SINGLE,
        teacher: tuple[nn.Module, dict] | None = None,
    ):
        """`teacher`: the frozen teacher and its record, already loaded (students of one lockstep job
        share it); by default the config's teacher is loaded here."""
        self.config, self.out, self.device, self.world = config, Path(out), device, world
        self.progress = progress and world.is_main
        self.log = log if world.is_main else (lambda *_: None)
        self.tags = dict(tags or {})  # labels for reports (method, budget, ...); not part of the fingerprint
        if config.bf16 and device.type != "cuda":
            raise BlockswapError("--bf16 needs a CUDA device (fast mode is for GPUs)")
        self.data = data or load_dataset(config.dataset, config.data_dir, config.image_size, config.val_size)
        # Before anything is built or written: a minibatch batch norm cannot train on would stop
        # the run mid-epoch with torch's error.
        check_training_batches(
            parse_arch(config.arch), self.data.input_size, config.batch_size, config.drop_last, len(self.data.train)
        )
        self.beta = config.beta if config.beta is not None else default_beta(config.protocol, self.data.image_size)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = build_model(config.arch, config.genotype, self.data.num_classes, seed=config.seed)
        self.model.to(device, memory_format=self.memory_format)
        self.params_dense = sum(p.numel() for p in self.model.parameters())
        if teacher is not None and not config.teacher:
            raise BlockswapError(f"{out}: a teacher was given to a run whose configuration names none")
        self.teacher, self.teacher_record = (teacher or self._load_teacher()) if config.teacher else (None, None)
        self.teacher_digest = self.teacher_record["weights_sha256"] if self.teacher_record else None
        self.data = normalised(self.data, config, self.teacher_record)
        self.inherited = self._inherit() if config.teacher_init else []
        self.masks = self._prune() if config.prune else None
        self.optimiser = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        step = WithIntermediates(self.model)
        if world.size > 1:
            step = distributed.data_parallel(step, device)
        self.step_model = torch.compile(step) if config.compile else step
        check_capturable(config, device, world.size)
        # The learning rate is the one Python value a captured step freezes: a new one captures again.
        self.update = stepper(
            self._update,
            device,
            config.cuda_graphs,
            key=self._learning_rates,
            before_capture=self._check_momentum_buffers,
        )
        self._checked_compatible = False
        self._shared: SharedWork | None = None  # train_epoch's, when called alone
        self.metrics: dict | None = None  # set when the run is finished
        self.lockstep = 1  # students trained together with this one (train_together sets it)

    def _load_teacher(self) -> tuple[nn.Module, dict]:
        spec = self.config.teacher
        load = next(load for claims, load in TEACHER_SOURCES if claims(spec))
        teacher, record = load(spec, self.data)
        # A teacher saved by a run that diverged (before training stopped such runs) would make
        # every loss nan from the first step; say so here rather than blame the student's lr.
        bad = non_finite_tensors(teacher.state_dict())
        if bad:
            raise BlockswapError(
                f"teacher {spec} has non-finite weights ({', '.join(bad[:3])}); it diverged: "
                "train it again with a lower learning rate"
            )
        teacher.to(self.device, memory_format=self.memory_format).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher, record

    def _inherit(self) -> list[str]:
        if not isinstance(self.teacher, PretrainedTeacher):
            raise BlockswapError(
                f"{self.out}: teacher_init copies a pretrained teacher's stem and kept blocks into the student; the "
                f"teacher {self.config.teacher} is not a pretrained network (torchvision:NAME:FILE or timm:NAME:FILE)"
            )
        return inherit_teacher_weights(self.model, self.teacher)

    def _prune(self) -> dict[str, torch.Tensor]:
        """Masks of the freshly initialised network from one seeded, augmented training minibatch of
        the (global) training batch size, BN in train mode; rank 0's masks are every rank's."""
        config = self.config
        if config.prune_params > self.params_dense:
            raise BlockswapError(
                f"--prune-params {config.prune_params} exceeds the {self.params_dense} parameters of the network"
            )
        batches = epoch_batches(
            self.data,
            config.batch_size,
            derive_seed(config.seed, 0, PRUNE_STREAM),
            self.device,
            config.cutout,
            drop_last=True,
        )
        images, labels = next(iter(batches))
        masks = PRUNERS[config.prune](
            self.model, images.contiguous(memory_format=self.memory_format), labels, config.prune_params
        )
        masks = distributed.broadcast_tensors({k: v.to(self.device).contiguous() for k, v in masks.items()})
        snip.apply_masks(self.model, masks)
        return masks

    # --- state ----------------------------------------------------------------------------------

    def _checkpoint(self, epoch: int, history: list, elapsed: float) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.config.fingerprint(self.teacher_digest),
            "config": asdict(self.config),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "masks": None if self.masks is None else {k: v.cpu() for k, v in self.masks.items()},
            "history": history,
            "elapsed": elapsed,
        }

    def _resume(self) -> tuple[int, list, float]:
        path = self.out / CHECKPOINT_FILE
        if not path.exists():
            return 0, [], 0.0
        advice = "delete it to train the run from the start"
        try:
            state = safe_load(path, CHECKPOINT_FORMAT)
        except BlockswapError as err:
            raise BlockswapError(f"{err}; {advice}") from None
        if state.get("fingerprint") != self.config.fingerprint(self.teacher_digest):
            raise BlockswapError(
                f"{path} belongs to a different configuration; use another --out folder or delete it to start afresh"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimiser.load_state_dict(state["optimiser"])
            if state.get("masks") is not None:
                self.masks = {k: v.to(self.device) for k, v in state["masks"].items()}
                snip.apply_masks(self.model, self.masks)
            epoch, history, elapsed = state["epoch"], list(state["history"]), float(state["elapsed"])
            if not (is_whole(epoch) and 0 <= epoch <= self.config.epochs):
                raise ValueError(f"epoch {epoch!r}")
        except KeyError as err:
            # The fingerprint matched, so the file claims to be this run's, but its contents are
            # not what _checkpoint writes (hand-edited, or damaged in a way zip does not notice).
            raise BlockswapError(f"{path} is damaged (no {err}); {advice}") from None
        except (TypeError, ValueError, AttributeError, RuntimeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BlockswapError(f"{path} is damaged ({reason}); {advice}") from None
        self.log(f"resuming {self.out} after epoch {epoch}")
        return epoch, history, elapsed

    def finished(self) -> dict | None:
        return finished_run(self.config, self.out, self.teacher_digest)

    # --- loop: one epoch as start_epoch, train_step per minibatch, end_epoch (train_together) ----

    def begin(self) -> int | None:
        """The epoch to start from (after resuming a checkpoint), or None when the run is finished."""
        done = self.finished()
        if done is not None:
            self.log(f"{self.out} is already trained (test error {done['test_error']:.2f}%); nothing to do")
            self.metrics = done
            return None
        # No folder made here: the first checkpoint makes it (atomic_save), so a run that stops in
        # its first epoch (a divergence, an error) leaves nothing behind.
        self.start, self.history, self.elapsed = self._resume()
        return self.start

    def start_epoch(self, epoch: int) -> None:
        lr = SCHEDULES[self.config.schedule](self.config, epoch)
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.step_model.train()
        self._epoch = {"lr": lr, "seconds": 0.0}
        self._tally = StepTally(self.device)

    def _learning_rates(self) -> tuple:
        return tuple(group["lr"] for group in self.optimiser.param_groups)

    def _check_momentum_buffers(self) -> None:
        """A capture must find every momentum buffer in place: SGD creates a missing one by cloning
        the gradient, and a captured clone would reset that buffer at every replay."""
        if self.config.momentum == 0:
            return
        missing = [n for n, p in self.model.named_parameters() if "momentum_buffer" not in self.optimiser.state[p]]
        if missing:
            raise BlockswapError(
                f"{self.out}: cannot capture the training step: no momentum buffer yet for {', '.join(missing[:3])}"
            )

    def _loss(self, images: torch.Tensor, labels: torch.Tensor, target):
        config = self.config
        out = self.step_model(images)
        if target is None:
            return out.logits, F.cross_entropy(out.logits, labels)
        if not self._checked_compatible:  # shapes only: once per run, on its first (eager) step
            self._checked_compatible = True
            check_compatible(out.stages, target.stages)
            if target.logits.shape[1] != out.logits.shape[1]:
                raise BlockswapError(
                    f"teacher {config.teacher} predicts {target.logits.shape[1]} classes but the "
                    f"student {out.logits.shape[1]}"
                )
        loss = distillation_loss(
            out.logits,
            labels,
            out.stages,
            target.logits,
            target.stages,
            self.beta,
            config.kd_alpha,
            config.kd_temperature,
        )
        return out.logits, loss

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training data, without evaluation or checkpoint (benchmarks time it)."""
        self.start_epoch(epoch)
        if self._shared is None:  # kept across epochs: captured steps read its held tensors
            self._shared = SharedWork([self])
        train_pass([self], epoch, self._shared)
        return self.epoch_means()

    def running_means(self) -> dict:
        """This rank's running loss and error of the epoch, as the progress bar shows them (a host sync)."""
        sums, seen = self._tally.read(), max(self._tally.seen, 1)
        return {"loss": f"{sums.loss_sum / seen:.3f}", "err": f"{100 * sums.wrong / seen:.1f}%"}

    def epoch_means(self, sums: EpochSums | None = None) -> dict:
        """The epoch's mean training loss and error so far, over every rank's share (`sums`: this
        rank's, when already read)."""
        if sums is None:
            sums = self._tally.read()
        loss_sum, wrong, seen = distributed.all_sum([sums.loss_sum, sums.wrong, self._tally.seen], self.device)
        return {"train_loss": loss_sum / seen, "train_error": 100 * wrong / seen}

    def train_step(self, epoch: int, step: int, steps: int, images, labels, target, held: bool = False) -> None:
        """One SGD step on a minibatch; `target` is the teacher's outputs for it (None: no teacher);
        `held`: the minibatch is in SharedWork's held tensors (a captured step may replay)."""
        config, world = self.config, self.world
        start = time.perf_counter()
        n = len(labels)
        scale = None
        if world.size > 1:
            # Each rank's loss is a mean over its share; weighting it by share / (global batch /
            # ranks) makes DDP's average of the ranks' gradients the global batch's mean gradient.
            # An empty share (a final batch smaller than the ranks) still joins the collectives.
            global_n = min(config.batch_size, len(self.data.train) - step * config.batch_size)
            scale = n * world.size / global_n
        logits, loss = self.update(images, labels, target, scale, held=held)
        # No host sync: the loss, error and first non-finite step are summed on the device and
        # checked when the epoch ends (end_epoch).
        self._tally.add(step, loss, logits, labels)
        self._epoch["seconds"] += time.perf_counter() - start

    def _update(self, images, labels, target, scale: float | None):
        """Forward, loss, backward and SGD step: what `self.update` runs eagerly or captures.
        `scale`: the data-parallel weight of this rank's loss (None in one process)."""
        with autocast(self.device, self.config.bf16):
            logits, loss = self._loss(images, labels, target)
        objective = loss
        if scale is not None:
            objective = loss * scale if len(labels) else logits.sum() * 0.0
        self.optimiser.zero_grad(set_to_none=True)
        objective.backward()
        self.optimiser.step()
        if self.masks is not None:
            snip.apply_masks(self.model, self.masks)  # momentum and weight decay must not revive them
        return logits, loss

    def end_epoch(self, epoch: int, steps: int, shared_seconds: float = 0.0) -> None:
        """Check, evaluate and checkpoint the epoch; `shared_seconds` is this run's share of the work
        done once for every student of a lockstep job (data, teacher)."""
        start = time.perf_counter()
        tally = self._epoch
        # Stop before anything is saved: the epoch's checkpoint is not written, so the last one (a
        # finite network) stays, and a rerun resumes there and stops at the same step again.
        # Under data parallelism a rank whose share gave the non-finite loss raises here; its exit
        # stops the others (distributed.spawn, or torchrun's agent).
        sums = self._tally.read()
        if sums.first_bad_step is not None:
            raise self._diverged(f"loss is {sums.first_bad_loss}", epoch, sums.first_bad_step, steps)
        # The last step's update comes after its loss: check the weights (and BN statistics)
        # themselves before the checkpoint keeps them. One sync per epoch; every rank holds the
        # same weights, so all of them stop together.
        if non_finite_tensors(self.model.state_dict()):
            raise self._diverged("the weights became non-finite", epoch, steps - 1, steps)
        row = {"epoch": epoch + 1, **self.epoch_means(sums), "lr": tally["lr"]}
        if self.data.val is not None and self.world.is_main:
            val = evaluate(
                self.model,
                evaluation_batches(self.data, "val", EVAL_BATCH_SIZE, self.device),
                self.device,
                self.config.bf16,
            )
            row["val_error"] = val["top1_error"]
        row["seconds"] = tally["seconds"] + shared_seconds + time.perf_counter() - start
        self.elapsed += row["seconds"]
        self.history.append(row)
        if self.world.is_main:
            atomic_save(self._checkpoint(epoch + 1, self.history, self.elapsed), self.out / CHECKPOINT_FILE)
        val_text = f" val err {row['val_error']:.2f}%" if "val_error" in row else ""
        self.log(
            f"{self._who(': ')}epoch {epoch + 1}/{self.config.epochs}: loss {row['train_loss']:.4f} "
            f"train err {row['train_error']:.2f}%{val_text} lr {tally['lr']:.4g} ({row['seconds']:.1f}s)"
        )

    def _diverged(self, what: str, epoch: int, step: int, steps: int) -> BlockswapError:
        lr = self.optimiser.param_groups[0]["lr"]
        return BlockswapError(
            f"training diverged{self._who('', ' in ')}: {what} at epoch {epoch + 1}, step {step + 1} of {steps} "
            f"(lr {lr:.4g}); lower the learning rate (--lr) and train into another --out folder or delete this "
            "one; nothing was marked finished"
        )

    def _who(self, after: str = "", before: str = "") -> str:
        """The run's folder, to tell the students of a lockstep job apart in its log ("" when alone)."""
        return f"{before}{self.out}{after}" if self.lockstep > 1 else ""

    def finish(self) -> dict | None:
        """The run's metrics (written now when it was trained; None on ranks other than 0)."""
        if self.metrics is None and self.world.is_main:
            self.metrics = self._finish(self.history, self.elapsed)
        return self.metrics

    def run(self) -> dict | None:
        """Train (or resume) to the end and return the metrics (on rank 0; None on other ranks)."""
        return train_together([self])[0]

    def _finish(self, history: list, elapsed: float) -> dict:
        test = evaluate(
            self.model,
            evaluation_batches(self.data, "test", EVAL_BATCH_SIZE, self.device),
            self.device,
            self.config.bf16,
        )
        if test["non_finite"]:
            # Finite but huge weights (one giant step) can still overflow: a network answering inf
            # or nan would be recorded with chance-level error as if it had trained.
            raise BlockswapError(
                f"training diverged: the network's outputs on the test set are not finite after epoch "
                f"{self.config.epochs} (lr {history[-1]['lr']:.4g}); lower the learning rate (--lr) and train into "
                "another --out folder or delete this one; nothing was marked finished"
            )
        cost = self.model.spec.cost(self.data.input_size)  # exact, from the genotype (no forward pass)
        stamp = provenance(seed=self.config.seed, device=self.device, seconds=elapsed)
        save_model(self.model, self.out / MODEL_FILE, self.data.input_size, self.data.name, masks=self.masks)
        write_result_text(self.out / HISTORY_FILE, pd.DataFrame(history).to_csv(index=False))
        params = snip.remaining_params(self.model, self.masks) if self.masks is not None else cost.params
        metrics = {
            "test_error": test["top1_error"],
            "test_error_top5": test["top5_error"],
            "arch": self.model.spec.arch.name,
            "genotype": self.model.spec.genotype.names,
            **cost.as_dict(),
            # Pruned: the parameters left; MACs and ops stay those of the dense network (unstructured
            # sparsity removes no layer), as the paper prints no ops for its SNIP rows.
            "params": params,
            "params_dense": cost.params,
            "prune": self.config.prune,
            "dataset": self.data.name,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "teacher": self.config.teacher,
            "teacher_source": self.teacher_record,
            "inherited": self.inherited,
            "normalisation": {"mean": list(self.data.mean), "std": list(self.data.std)},
            "beta": self.beta if self.teacher is not None else None,
            "processes": self.world.size,
            "mode": self.config.mode,
            "tags": self.tags,
            "lockstep": self.lockstep,
            **convergence(history),
            "fingerprint": self.config.fingerprint(self.teacher_digest),
            # The files this record describes: a model.pt or history.csv copied in from another
            # run, with its own self-consistent seal, is told apart (checkpoint.check_recorded_file).
            "model_sha256": file_digest(self.out / MODEL_FILE),
            "history_sha256": file_digest(self.out / HISTORY_FILE),
            "hyperparameters": asdict(self.config),
            "code_version": stamp["code_version"],
            "provenance": stamp,
        }
        write_json(self.out / METRICS_FILE, metrics)
        (self.out / CHECKPOINT_FILE).unlink(missing_ok=True)
        self.log(f"finished: test error {test['top1_error']:.2f}% (top-5 {test['top5_error']:.2f}%) -> {self.out}")
        return metrics
