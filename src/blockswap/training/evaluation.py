"""Evaluating a network (top-1 / top-5 error, BN in eval mode) and the pieces the trainer shares with
it: bf16 autocast and a wrapper that gives any teacher the intermediates attention transfer reads."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import BlockswapError

EVAL_BATCH_SIZE = 512  # evaluation only: larger batches, same numbers


@torch.no_grad()
def evaluate(model, batches, device, bf16: bool = False) -> dict:
    """Top-1 and top-5 error (%) over `batches`, BN in eval mode, and how many examples got
    non-finite logits (a diverged network's, counted as wrong by argmax)."""
    model.eval()
    top1 = top5 = total = non_finite = 0
    for images, labels in batches:
        with autocast(device, bf16):
            logits = model(images)
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        # The three counts leave the device together: one host sync per batch.
        counts = torch.stack(
            [
                (best[:, 0] == labels).sum(),
                (best == labels[:, None]).any(dim=1).sum(),
                (~torch.isfinite(logits)).any(dim=1).sum(),
            ]
        ).tolist()
        top1, top5, non_finite = top1 + counts[0], top5 + counts[1], non_finite + counts[2]
        total += len(labels)
    if total == 0:
        raise BlockswapError("the evaluation split is empty")
    return {
        "top1_error": 100.0 * (1 - top1 / total),
        "top5_error": 100.0 * (1 - top5 / total),
        "non_finite": non_finite,
    }


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class WithIntermediates(nn.Module):
    """`forward` returns the network's logits, stage outputs and probes: DistributedDataParallel
    synchronises gradients only of passes through its own forward, and distillation needs the
    stage outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.forward_intermediates(x)
