"""The measuring pass every proxy is measured on, and Table 1's reading after k minibatches.

Table 1 (docs/paper.md s.7) reads the Fisher potential and three other metrics "after k
minibatches". Each of the k minibatches gets one pass: a forward, one backward that yields both
the probes' gradients and the weight gradients, and an SGD step (lr 0.1, momentum 0.9, weight
decay 5e-4). In the default `accumulated` reading, as in the released code's ablation:

- fisher: the per-pass Fisher potentials summed over the k passes, each with the weights before
  its own step (the released code's backward hook adds every pass to a running total, read once
  after the k-th step; that step only changes later passes, so it is not taken);
- accuracy: the running training accuracy over the k minibatches (correct / seen, in %), what a
  training loop reports; the released code measured none;
- grad_norm: the per-pass gradient norms summed over the k passes, like the Fisher potential (a
  sum and a mean rank candidates alike at one k);
- l2_norm: the weights the k-th minibatch was measured with (after k-1 steps), the network every
  other proxy sees at k: a state of the weights, not a quantity of a pass, so nothing to add up.

At k = 1 every reading is the freshly initialised network's on minibatch 1, and `fisher` is the
Fisher potential itself. The `snapshot` reading measures pass k alone instead (minibatch k after
k-1 steps), for comparison.

The Fisher potential itself, what a pass reads at the probes, is defined in fisher.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import BlockswapError
from ..networks.models import Network
from .fisher import fisher_from_probes

# Table 1's registry entries (with every other proxy's) are in blockswap.search.proxies; `shared_pass`
# is the one pass that computes the Fisher potential and, beside it, Table 1's accuracy, l2 norm
# and grad norm, and the weight gradients of the SGD step that follows it.


@dataclass
class Table1Reading:
    """Table 1's metrics over one pass or several: `then` adds a later pass."""

    blocks: torch.Tensor  # per-block Fisher potential
    correct: int  # examples classified correctly
    seen: int  # examples
    grad_norm: float  # sum over weight tensors of ||dL/dW|| (0 where not asked for)
    l2_norm: float  # sum over weight tensors of ||W||, of the weights of the latest pass

    def then(self, later: Table1Reading) -> Table1Reading:
        return Table1Reading(
            self.blocks + later.blocks,
            self.correct + later.correct,
            self.seen + later.seen,
            self.grad_norm + later.grad_norm,
            later.l2_norm,
        )

    def values(self, proxies: Sequence) -> dict[str, float]:
        """The Table 1 values `proxies` ask for (the Fisher potential always)."""
        values = {"fisher": float(self.blocks.sum())}
        if _wants(proxies, "accuracy"):
            values["accuracy"] = 100.0 * self.correct / self.seen
        if _wants(proxies, "l2_norm"):
            values["l2_norm"] = self.l2_norm
        if any(p.needs_weight_grads for p in proxies):
            values["grad_norm"] = self.grad_norm
        return values


class Pass(NamedTuple):
    reading: Table1Reading
    loss: torch.Tensor  # the minibatch's mean cross-entropy (detached)
    grads: tuple  # dL/dp of each of `step_params` (None where p does not reach the loss)


def shared_pass(
    model: Network, images: torch.Tensor, labels: torch.Tensor, proxies: Sequence, step_params: Sequence = ()
) -> Pass:
    """One forward and ONE backward: the probes' gradients (Fisher potential), the conv/linear
    weight gradients when grad_norm is asked for, and the gradients of `step_params` for an SGD
    step that follows (all taken together, so the step costs no second backward)."""
    out = model.forward_intermediates(images)
    loss = F.cross_entropy(out.logits, labels)
    weights_wanted = any(p.needs_weight_grads for p in proxies)
    params = list(step_params) or ([p for p in model.parameters() if p.dim() > 1] if weights_wanted else [])
    grads = torch.autograd.grad(loss, list(out.probes) + params, allow_unused=True)
    probe_grads, param_grads = grads[: len(out.probes)], grads[len(out.probes) :]
    with torch.no_grad():
        blocks = fisher_from_probes(out.probes, probe_grads).detach()
        correct = int((out.logits.argmax(1) == labels).sum())
        weight_grads = [g for p, g in zip(params, param_grads) if p.dim() > 1 and g is not None]
        grad_norm = float(sum(g.norm() for g in weight_grads)) if weights_wanted else 0.0
        l2_norm = float(sum(p.norm() for p in model.parameters() if p.dim() > 1)) if _wants(proxies, "l2_norm") else 0.0
    return Pass(Table1Reading(blocks, correct, len(labels), grad_norm, l2_norm), loss.detach(), param_grads)


def _wants(proxies: Sequence, name: str) -> bool:
    return any(p.name == name for p in proxies)


def measure_one_pass(model: Network, images: torch.Tensor, labels: torch.Tensor, proxies: Sequence):
    """All Table 1 `proxies` on one minibatch; returns (values, fisher per block, loss)."""
    one = shared_pass(model, images, labels, proxies)
    return one.reading.values(proxies), one.reading.blocks.tolist(), one.loss


# SGD between measurements: the paper's training settings (docs/paper.md s.4).
ABLATION_LR = 0.1
ABLATION_MOMENTUM = 0.9
ABLATION_WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class Table1Mode:
    """How Table 1's reading after k minibatches is made from the k passes."""

    description: str
    reading: Callable[[Table1Reading, Table1Reading], Table1Reading]  # (passes 1..k added, pass k) -> reading
    times_every_pass: bool  # every pass is part of a reading (else only the passes at the points)


TABLE1_MODES = {
    "accumulated": Table1Mode(
        "per-pass metrics added over the k passes (the paper's ablation, the released code's running Fisher)",
        lambda added, last: added,
        True,
    ),
    "snapshot": Table1Mode("pass k alone: minibatch k after k-1 SGD steps", lambda added, last: last, False),
}


def table1_mode(name: str) -> Table1Mode:
    if name not in TABLE1_MODES:
        raise BlockswapError(f"unknown Table 1 reading {name!r}; allowed: {', '.join(TABLE1_MODES)}")
    return TABLE1_MODES[name]


def measure_along_training(
    model: Network,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    proxies: Sequence,
    minibatches: Sequence[int],
    at_point: Callable[[int, Network, torch.Tensor, torch.Tensor], None] | None = None,
    timings: dict | None = None,
    mode: str = "accumulated",
) -> dict[int, tuple[dict, list[float]]]:
    """Table 1's `proxies` after k minibatches for each k (the module docstring says how `mode`
    reads them); returns {k: (values, fisher per block)}.

    Minibatch `step` gets one shared pass and, unless it is the last one needed, the SGD step
    that pass's gradients feed. `at_point(k, model, images, labels)` runs at each k before pass k
    touches the network (the other proxies copy it there: after k-1 steps, its BN statistics those
    of the k-1 passes before); `timings[step]` receives the seconds of every pass that enters a
    reading (forward, backward and metrics; the SGD step is training, not measuring).
    """
    points = _checked_points(minibatches)
    rule = table1_mode(mode)
    last = points[-1]
    model.train()
    params = list(model.parameters())
    optimiser = None
    if last > 1:
        optimiser = torch.optim.SGD(
            params, lr=ABLATION_LR, momentum=ABLATION_MOMENTUM, weight_decay=ABLATION_WEIGHT_DECAY
        )
    results, added = {}, None
    for step in range(1, last + 1):
        images, labels = _next_minibatch(batches, step)
        if step in points and at_point is not None:
            at_point(step, model, images, labels)
        start = time.perf_counter()
        one = shared_pass(model, images, labels, proxies, params if step < last else ())
        if timings is not None and (step in points or rule.times_every_pass):
            synchronise(images.device)
            timings[step] = time.perf_counter() - start
        if step < last:
            _sgd_step(optimiser, params, one.grads)
        added = one.reading if added is None else added.then(one.reading)
        if step in points:
            reading = rule.reading(added, one.reading)
            results[step] = (reading.values(proxies), reading.blocks.tolist())
    return results


def _checked_points(minibatches: Sequence[int]) -> list[int]:
    points = sorted(set(minibatches))
    if not points or points[0] < 1:
        raise BlockswapError(f"minibatch counts must be positive integers, got {list(minibatches)}")
    return points


def _next_minibatch(batches: Iterator, step: int):
    try:
        return next(batches)
    except StopIteration:
        raise BlockswapError(f"the training set ran out of minibatches before step {step}") from None


def _sgd_step(optimiser: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: Sequence) -> None:
    """One SGD step from gradients already computed; no gradient is left on the network."""
    for p, g in zip(params, grads):
        p.grad = g
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)


def synchronise(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timing counts it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
