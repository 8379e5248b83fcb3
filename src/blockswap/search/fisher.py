"""Step 2 of BlockSwap: Fisher potential (docs/paper.md s.2) and the Table 1 ablation proxies.

Fisher potential of a freshly initialised network on one minibatch, BatchNorm in training mode,
mean-reduced cross-entropy, one backward pass: at each block's probe a (the residual branch's
output, before the shortcut add) with g = dL/da,

    Delta_c = 1/(2N) * sum_n ( sum_{h,w} a[n,c,h,w] * g[n,c,h,w] )^2,

summed over the channels of a block (its score) and over the blocks. Only the activation
gradients at the probes are needed, so `torch.autograd.grad` is asked for exactly those: no
weight gradient is ever computed, and the backward pass stops at the first block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import BlockswapError
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
    from .proxies import PROXIES

    model.train()
    values, blocks, _ = measure_one_pass(model, images, labels, [PROXIES["fisher"]])
    return FisherPotential(values["fisher"], blocks)


# --- Table 1 proxies ----------------------------------------------------------------------------
# Their registry entries (with every other proxy's) are in blockswap.search.proxies; `measure_one_pass` is the one
# pass that computes the Fisher potential and, beside it, Table 1's accuracy, l2 norm and grad norm.


def measure_one_pass(
    model: Network, images: torch.Tensor, labels: torch.Tensor, proxies: Sequence, keep_graph: bool = False
):
    """All `proxies` on one minibatch; returns (values, fisher per block, loss for a training step)."""
    out = model.forward_intermediates(images)
    loss = F.cross_entropy(out.logits, labels)
    weights = [p for p in model.parameters() if p.dim() > 1] if any(p.needs_weight_grads for p in proxies) else []
    grads = torch.autograd.grad(loss, list(out.probes) + weights, retain_graph=keep_graph)
    blocks = fisher_from_probes(out.probes, grads[: len(out.probes)]).detach()
    values = {"fisher": float(blocks.sum())}
    with torch.no_grad():
        if any(p.name == "accuracy" for p in proxies):
            values["accuracy"] = float((out.logits.argmax(1) == labels).float().mean() * 100)
        if any(p.name == "l2_norm" for p in proxies):
            values["l2_norm"] = float(sum(p.norm() for p in model.parameters() if p.dim() > 1))
        if weights:
            values["grad_norm"] = float(sum(g.norm() for g in grads[len(out.probes) :]))
    return values, blocks.tolist(), loss


# SGD between measurements: the paper's training settings (docs/paper.md s.4).
ABLATION_LR = 0.1
ABLATION_MOMENTUM = 0.9
ABLATION_WEIGHT_DECAY = 5e-4


def measure_along_training(
    model: Network,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    proxies: Sequence,
    minibatches: Sequence[int],
    at_point: Callable[[int, Network, torch.Tensor, torch.Tensor], None] | None = None,
    timings: dict | None = None,
) -> dict[int, tuple[dict, list[float]]]:
    """Proxies after k minibatches for each k: measured on minibatch k after SGD on 1..k-1.

    k = 1 is the network at initialisation, so `fisher` at k = 1 is the Fisher potential.
    `at_point(k, model, images, labels)` runs at each k before the shared pass touches the
    network (the other proxies copy it there: its BN statistics are still those after k-1 steps);
    `timings[k]` receives the seconds of the shared pass.
    """
    points = sorted(set(minibatches))
    if not points or points[0] < 1:
        raise BlockswapError(f"minibatch counts must be positive integers, got {list(minibatches)}")
    model.train()
    optimiser = None
    if points[-1] > 1:
        optimiser = torch.optim.SGD(
            model.parameters(), lr=ABLATION_LR, momentum=ABLATION_MOMENTUM, weight_decay=ABLATION_WEIGHT_DECAY
        )
    results = {}
    for step in range(1, points[-1] + 1):
        try:
            images, labels = next(batches)
        except StopIteration:
            raise BlockswapError(f"the training set ran out of minibatches before step {step}") from None
        last = step == points[-1]
        if step in points:
            if at_point is not None:
                at_point(step, model, images, labels)
            start = time.perf_counter()
            values, blocks, loss = measure_one_pass(model, images, labels, proxies, keep_graph=not last)
            if timings is not None:
                synchronise(images.device)
                timings[step] = time.perf_counter() - start
            results[step] = (values, blocks)
        elif not last:
            loss = F.cross_entropy(model(images), labels)
        if not last:
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return results


def synchronise(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timing counts it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
