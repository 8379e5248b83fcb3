"""Step 2 of BlockSwap: Fisher potential (docs/paper.md s.2).

Fisher potential of a freshly initialised network on one minibatch, BatchNorm in training mode,
mean-reduced cross-entropy, one backward pass: at each block's probe a (the residual branch's
output, before the shortcut add) with g = dL/da,

    Delta_c = 1/(2N) * sum_n ( sum_{h,w} a[n,c,h,w] * g[n,c,h,w] )^2,

summed over the channels of a block (its score) and over the blocks. Only the activation
gradients at the probes are needed, so `torch.autograd.grad` is asked for exactly those: no
weight gradient is ever computed, and the backward pass stops at the first block.

Table 1's reading of it after k minibatches, and the other proxies measured in the same pass, are
in search/measure.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..networks.models import Network


def fisher_from_probes(probes: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-block Fisher potential from probe activations and their loss gradients: shape (blocks,)."""
    scores = []
    for a, g in zip(probes, grads):
        per_example_channel = (a * g).sum(dim=(2, 3))  # (N, C): sum over h, w
        scores.append(per_example_channel.square().sum() / (2 * a.shape[0]))
    return torch.stack(scores)


@dataclass
class FisherPotential:
    total: float
    blocks: list[float]


def fisher_potential(model: Network, images: torch.Tensor, labels: torch.Tensor) -> FisherPotential:
    """Fisher potential of `model` on one minibatch (total and per block). BN uses batch stats."""
    model.train()
    out = model.forward_intermediates(images)
    loss = F.cross_entropy(out.logits, labels)
    grads = torch.autograd.grad(loss, list(out.probes))
    with torch.no_grad():
        blocks = fisher_from_probes(out.probes, grads).detach()
    return FisherPotential(float(blocks.sum()), blocks.tolist())
