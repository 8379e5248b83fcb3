"""What a proxy's compute function is given, and the helpers the compute functions share.

A proxy is measured on a `Measurement`: the candidate after k-1 SGD steps (k = 1: freshly
initialised), the k-th minibatch, and the seeds it may draw synthetic inputs from. Every proxy
outside Table 1 gets its own `copy.deepcopy` of the network, so it may switch BatchNorm modes,
take |theta|, cast to float64 or run forward passes that move BN running statistics without
changing the network the Table 1 proxies and the SGD steps see.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch
from torch import nn

from ...seeds import derive_seed


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


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The conv and linear layers, in module order: the layers zero-cost-nas scores."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def fresh_copy_ready(model: nn.Module) -> nn.Module:
    """A proxy's copy in the mode most proxies measure in: training mode (batch statistics), no
    stale gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    return model
