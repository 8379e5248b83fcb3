"""The rules for training several students in lockstep: one job, one pass over the data per epoch,
the teacher's outputs (logits and attention maps) computed once per minibatch for all of them.

On a CPU a small student's step costs less than the teacher's forward pass and a process's
start-up; on a GPU one job keeps the device busy with several small networks. Students of one
lockstep job share a seed-derived data order and augmentation, which is also what a fair comparison
of networks wants: their differences are then differences between networks, not between the
minibatches they happened to see (common random numbers).

The loop itself is training/train.py's `train_together`, which trains one run as a group of one;
this module says which runs may share it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BlockswapError

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
    "cuda_graphs",
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
