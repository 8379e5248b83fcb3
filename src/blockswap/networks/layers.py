"""Declarative layer specs: the single source from which modules are built *and* costs are counted.

Every block and network is described as a sequence of these small frozen records. `cost()` gives a
record's trainable parameters, multiply-accumulates and paper ops at a spatial size without building
anything; `modules.py` builds the PyTorch module of each. Counting a candidate therefore needs no
network (nor torch), and the hook-based counter in `counting.py` checks the two against each other.

Ops follow the paper's convention (docs/paper.md s.5): conv/linear MACs, plus one op per element
entering a *block-level* ReLU (`PreActivation`) and max-pool window reads. ReLUs inside cheap
units (`Relu`) cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Trainable parameters, multiply-accumulates (conv + linear weights) and paper ops."""

    params: int = 0
    macs: int = 0
    ops: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs, self.ops + other.ops)

    def as_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "ops": self.ops}


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Conv:
    """A bias-free 2-D convolution with 'same' padding (k // 2), as every conv in these networks."""

    cin: int
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (
            conv_output_size(h, self.kernel, self.stride, self.padding),
            conv_output_size(w, self.kernel, self.stride, self.padding),
        )

    def cost(self, h: int, w: int) -> Cost:
        h_out, w_out = self.output_size(h, w)
        weights = self.cin // self.groups * self.cout * self.kernel * self.kernel
        macs = weights * h_out * w_out
        return Cost(params=weights, macs=macs, ops=macs)


class SameSize:
    """A layer that keeps the spatial size (BN, ReLU, BN-ReLU)."""

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return h, w


@dataclass(frozen=True)
class Norm(SameSize):
    """BatchNorm2d: weight and bias are trainable (running statistics are not parameters)."""

    channels: int

    def cost(self, h: int, w: int) -> Cost:
        return Cost(params=2 * self.channels)


@dataclass(frozen=True)
class Relu(SameSize):
    """A ReLU inside a cheap unit; the paper's ops convention does not count it."""

    def cost(self, h: int, w: int) -> Cost:
        return Cost()


@dataclass(frozen=True)
class PreActivation(SameSize):
    """Block-level BN-ReLU: 2C parameters and one paper op per element entering the ReLU."""

    channels: int

    def cost(self, h: int, w: int) -> Cost:
        return Cost(params=2 * self.channels, ops=self.channels * h * w)


@dataclass(frozen=True)
class MaxPool:
    """Max-pooling; the paper counts C * Hout * Wout * k * k ops (one per window element)."""

    channels: int
    kernel: int
    stride: int
    padding: int

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (
            conv_output_size(h, self.kernel, self.stride, self.padding),
            conv_output_size(w, self.kernel, self.stride, self.padding),
        )

    def cost(self, h: int, w: int) -> Cost:
        h_out, w_out = self.output_size(h, w)
        return Cost(ops=self.channels * h_out * w_out * self.kernel * self.kernel)


@dataclass(frozen=True)
class Classifier:
    """Global average pooling (adapts to any input size) then a linear layer with bias.

    MACs count the weight matrix; the paper's ops count weights + bias (docs/paper.md s.5).
    """

    features: int
    classes: int

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return 1, 1

    def cost(self, h: int, w: int) -> Cost:
        weights = self.features * self.classes
        return Cost(params=weights + self.classes, macs=weights, ops=weights + self.classes)


LayerSpec = Conv | Norm | Relu | PreActivation | MaxPool | Classifier


def sequence_cost(layers: Iterable[LayerSpec], h: int, w: int) -> tuple[Cost, int, int]:
    """Cost of applying `layers` in order to an h x w input; returns (cost, h_out, w_out)."""
    total = Cost()
    for layer in layers:
        total = total + layer.cost(h, w)
        h, w = layer.output_size(h, w)
    return total, h, w
