"""Training several students in lockstep: one job, one pass over the data per epoch, the teacher's
outputs (logits and attention maps) computed once per minibatch for all of them.

On a CPU a small student's step costs less than the teacher's forward pass and a process's
start-up; on a GPU one job keeps the device busy with several small networks. Students of one
lockstep job share a seed-derived data order and augmentation, which is also what a fair comparison
of networks wants: their differences are then differences between networks, not between the
minibatches they happened to see (common random numbers).

The runs are `Trainer`s (training/train.py), driven through their step-level methods: `begin`,
`start_epoch`, `train_step`, `end_epoch` and `finish`. `Trainer.run` is `train_together` with one run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack

import torch
from tqdm import tqdm

from ..data.loader import epoch_batches
from ..errors import BlockswapError
from ..locks import run_lock
from ..seeds import derive_seed
from . import distributed
from .evaluation import autocast

# Configuration fields that students trained in lockstep must share: they see the same minibatches
# (data, order and augmentation come from the seed and the epoch) and the same teacher outputs.
LOCKSTEP_FIELDS = (
    "dataset",
    "data_dir",
    "image_size",
    "val_size",
    "epochs",
    "batch_size",
    "drop_last",
    "cutout",
    "seed",
    "teacher",
    "bf16",
    "channels_last",
)


def check_lockstep(trainers: Sequence) -> None:
    """Students trained together must share their minibatches: the fields of LOCKSTEP_FIELDS, the
    device and a single process each; and each must have its own folder."""
    if not trainers:
        raise BlockswapError("nothing to train: no students were given")
    lead = trainers[0]
    outs = [t.out.resolve() for t in trainers]
    if len(set(outs)) < len(outs):
        twice = next(o for o in outs if outs.count(o) > 1)
        raise BlockswapError(f"two students of one lockstep job write to the same folder {twice}")
    if len(trainers) > 1 and lead.world.size > 1:
        raise BlockswapError("students are trained in lockstep in one process; use --nproc 1")
    for t in trainers[1:]:
        for name in LOCKSTEP_FIELDS:
            ours, theirs = getattr(t.config, name), getattr(lead.config, name)
            if ours != theirs:
                raise BlockswapError(
                    f"students trained in lockstep share their minibatches, but {t.out} has {name} {ours!r} and "
                    f"{lead.out} {theirs!r}; train them in separate jobs"
                )
        if t.device != lead.device:
            raise BlockswapError(f"students trained in lockstep share one device: {t.out} is on {t.device}")


def train_pass(active: Sequence, epoch: int) -> tuple[float, int]:
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
    for step, (images, labels) in enumerate(bar):
        images = images.contiguous(memory_format=lead.memory_format)
        target = None
        if lead.teacher is not None:
            with torch.no_grad(), autocast(lead.device, config.bf16):
                target = lead.teacher.forward_intermediates(images)
        steps_start = time.perf_counter()
        for t in active:
            t.train_step(epoch, step, len(batches), images, labels, target)
        own += time.perf_counter() - steps_start  # the students' own steps: not shared time
        if lead.progress:
            bar.set_postfix(lead.running_means())
    return time.perf_counter() - start - own, len(batches)


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
    with ExitStack() as held:
        if lead.world.is_main:  # one lock per folder: the other ranks write nothing there
            for t in trainers:
                held.enter_context(run_lock(t.out))
        todo = [t for t in trainers if t.begin() is not None]
        for epoch in range(min((t.start for t in todo), default=config.epochs), config.epochs):
            active = [t for t in todo if t.start <= epoch]
            for t in active:
                t.start_epoch(epoch)
            shared, steps = train_pass(active, epoch)
            for t in active:
                t.end_epoch(epoch, steps, shared / len(active))
        results = [t.finish() for t in trainers]
        distributed.barrier()  # the other ranks return once the results are written
    return results
