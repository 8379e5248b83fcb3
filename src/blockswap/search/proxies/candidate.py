"""Every proxy at every point k on one candidate: Table 1's proxies in the Fisher potential's own
pass on the live network, added up over the k minibatches as in the paper's ablation (measure.py);
every other proxy on its own deep copy of the network after k-1 SGD steps, so measuring never
changes what is trained or what Table 1 sees."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence

import torch

from ..measure import measure_along_training, synchronise
from .base import Measurement
from .registry import Proxy, stored_value


def private_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A proxy's own copy of the network: same weights, BN statistics and layout, no gradients."""
    twin = copy.deepcopy(model)
    twin.zero_grad(set_to_none=True)
    return twin.train()


def measure_candidate(
    model: torch.nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    proxies: Sequence[Proxy],
    points: Sequence[int],
    seed: int = 0,
    candidate: int = 0,
    costs: dict | None = None,
    table1_mode: str = "accumulated",
) -> tuple[dict[int, tuple[dict, list[float]]], dict[str, float]]:
    """Every proxy at every k of `points`: Table 1's after k minibatches, read as `table1_mode`
    says (measure.measure_along_training), every other one on the network after k-1 SGD steps.

    Returns ({k: (values, fisher per block)}, seconds per proxy summed over the points). Table 1's
    proxies share one pass per minibatch, timed as `fisher` (every pass that enters a reading);
    the cost columns are read, not measured."""
    shared = [p for p in proxies if p.kind == "table1"]
    own = [p for p in proxies if p.own_pass]
    seconds = {"fisher": 0.0, **{p.name: 0.0 for p in own}}
    measured: dict[int, dict] = {}

    def at_point(k, live, images, labels):
        measured[k] = {}
        for proxy in own:
            start = time.perf_counter()
            # A free proxy runs no network: it is given the live one (nothing to copy).
            net = live if proxy.cost == "free" else private_copy(live)
            m = Measurement(net, images, labels, seed, candidate, k, dict(costs or {}))
            value = proxy.compute(m)
            synchronise(images.device)
            seconds[proxy.name] += time.perf_counter() - start
            measured[k][proxy.name] = stored_value(proxy, value, candidate, k)

    timings: dict[int, float] = {}
    results = measure_along_training(
        model, batches, shared, points, at_point=at_point if own else None, timings=timings, mode=table1_mode
    )
    seconds["fisher"] = sum(timings.values())
    for k, (values, _) in results.items():
        values.update(measured.get(k, {}))
        for proxy in proxies:
            if proxy.cost_column and costs is not None:
                values[proxy.name] = float(costs[proxy.cost_column])
    return results, seconds
