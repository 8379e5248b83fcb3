"""An epoch's training loss, error and first non-finite step, summed on the device.

Reading a loss back to the host after every step makes the host wait for the device: on a GPU the
next step's kernels (and, in a lockstep job, the next student's) cannot be queued while the
current ones run. The sums therefore stay on the device and are read once, when the epoch ends
(or when a progress bar asks for them). The arithmetic is the host's: the float32 loss widened to
float64, times the minibatch size, added in step order, and the wrong predictions counted exactly,
so the epoch's means are the same numbers a per-step read would give.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class EpochSums(NamedTuple):
    loss_sum: float
    wrong: int
    first_bad_step: int | None  # the first step whose loss was not finite (0-based), if any
    first_bad_loss: float | None  # its loss (nan or +-inf)


def sum_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS has no float64: its sums are float32)."""
    return torch.float32 if device.type == "mps" else torch.float64


class StepTally:
    """Sums of one epoch's steps on `device`; `add` queues a few small kernels and never syncs."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=sum_dtype(device), device=device)
        self.wrong = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), dtype=sum_dtype(device), device=device)
        self.seen = 0

    def add(self, step: int, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        if n:
            value = loss.detach().to(self.loss_sum.dtype)
            self.loss_sum += value * n
            self.wrong += (logits.detach().argmax(1) != labels).sum()
            # Only the first non-finite step is kept: the error names where training went wrong.
            first = ~torch.isfinite(value) & (self.first_bad < 0)
            self.first_bad.masked_fill_(first, step)
            # In place: these tensors are made on one stream and updated on a student's (CUDA
            # streams), so none of them may be freed and reallocated mid-epoch.
            self.bad_loss.copy_(torch.where(first, value, self.bad_loss))
        self.seen += n

    def read(self) -> EpochSums:
        """The sums so far (the first read waits for the device; the other two are then ready)."""
        first_bad = int(self.first_bad.item())
        if first_bad < 0:
            return EpochSums(float(self.loss_sum.item()), int(self.wrong.item()), None, None)
        return EpochSums(float(self.loss_sum.item()), int(self.wrong.item()), first_bad, float(self.bad_loss.item()))
