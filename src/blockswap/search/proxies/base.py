"""What every proxy entry states, what it is given, and the rules its values follow.

A proxy is measured on a `Measurement`: the candidate after k-1 SGD steps (k = 1: freshly
initialised), the k-th minibatch, and the seeds it may draw synthetic inputs from. Every proxy
outside Table 1 gets its own `copy.deepcopy` of the network, so it may switch BatchNorm modes,
take |theta|, cast to float64 or run forward passes that move BN running statistics without
changing the network the Table 1 proxies and the SGD steps see.
"""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import BlockswapError
from ...seeds import derive_seed

# How a degenerate network's log-valued proxy is stored: log of zero (no signal reaches the
# output, a singular NASWOT kernel) is -inf, which no scores file may hold (validation.py: every
# number finite). It becomes the most negative finite float64, so the candidate ranks last under
# `higher_is_better` and the file stays readable. NaN and +inf have no such reading: an error.
FLOOR = -sys.float_info.max

KINDS = ("table1", "gradient", "data-free", "activation", "control")
DATA = ("minibatch", "gaussian", "ones", "none")
BATCHNORM = ("train", "bypassed", "none")
COSTS = ("free", "forward", "forward+backward", "double-backward")


@dataclass
class Measurement:
    """What a proxy's compute function is given at one point k of `--minibatches`."""

    model: nn.Module  # the proxy's own copy of the candidate after k-1 SGD steps (train mode)
    images: torch.Tensor  # minibatch k, in the scoring layout (channels_last by default)
    labels: torch.Tensor
    seed: int = 0  # the scoring seed
    candidate: int = 0  # the candidate's index: with `seed`, fixes every synthetic draw
    k: int = 1
    costs: dict = field(default_factory=dict)  # the candidate's params / macs / ops columns

    def generator(self, name: str) -> torch.Generator:
        """A CPU generator for `name`'s synthetic draws: a function of (seed, candidate, name)
        only, so the same candidate draws the same inputs in every shard and on every run, and
        the draws of two proxies are unrelated streams."""
        return torch.Generator().manual_seed(derive_seed(self.seed, self.candidate, stream(name)))


def stream(name: str) -> int:
    """A fixed stream number per proxy name (CRC-32 is the same on every platform and run;
    Python's str hash is salted per process)."""
    return zlib.crc32(name.encode())


@dataclass(frozen=True)
class Proxy:
    """One registry entry: a training-free predictor of final error and how it is measured.

    `higher_is_better` is the sign under which the proxy predicts LOWER final error; a rank
    correlation with error is then expected to be negative.
    """

    name: str
    higher_is_better: bool
    definition: str  # one line: what is computed
    source: str  # the paper that defines it
    labels: bool  # does it read the minibatch's labels?
    data: str  # minibatch | gaussian | ones | none
    batchnorm: str  # train (batch statistics) | bypassed | none (no forward pass)
    dtype: str  # the dtype it is computed in ("scoring" = the network's, float32 by default)
    cost: str  # free | forward | forward+backward | double-backward
    kind: str  # table1 | gradient | data-free | activation | control
    compute: Callable[[Measurement], float]
    needs_weight_grads: bool = False  # Table 1's shared pass: ask autograd for dL/dW too
    cost_column: str | None = None  # a control that IS a column of the candidates file

    def __post_init__(self):
        for value, allowed in ((self.kind, KINDS), (self.data, DATA), (self.batchnorm, BATCHNORM), (self.cost, COSTS)):
            if value not in allowed:
                raise BlockswapError(f"proxy {self.name}: {value!r} is not one of {', '.join(allowed)}")

    @property
    def description(self) -> str:  # the name the Table 1 registry used
        return self.definition

    @property
    def own_pass(self) -> bool:
        """Measured on its own copy of the network (everything but Table 1's shared pass and the
        cost columns, which are read, not measured)."""
        return self.kind != "table1" and self.cost_column is None


def stored_value(proxy: Proxy, value: float, candidate: int, k: int) -> float:
    """`value` as a scores file holds it: -inf becomes FLOOR; NaN or +inf is an error."""
    value = float(value)
    if value == -math.inf:
        return FLOOR
    if not math.isfinite(value):
        raise BlockswapError(
            f"proxy {proxy.name} is {value} for candidate {candidate} at k = {k}; a scores file "
            "holds finite numbers only"
        )
    return value


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The conv and linear layers, in module order: the layers zero-cost-nas scores."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def fresh_copy_ready(model: nn.Module) -> nn.Module:
    """A proxy's copy in the mode most proxies measure in: training mode (batch statistics), no
    stale gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    return model
