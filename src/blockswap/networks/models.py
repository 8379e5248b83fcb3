"""Teacher and student networks as PyTorch modules: a `Network` is built from a `NetworkSpec`
(architectures.py) and initialised as the paper's code does. A model is rebuilt from
`(arch name, genotype, num_classes)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .architectures import Architecture, GenotypeLike, NetworkSpec
from .layers import Classifier
from .modules import build_block, build_layer, build_sequence


class PostActivationStages(list):
    """A teacher's stage outputs taken after the ReLU that follows each stage's last residual add
    (a post-activation network): a pre-activation student's stages are compared after a ReLU."""


class Intermediates(NamedTuple):
    logits: torch.Tensor
    stages: list[torch.Tensor]  # each stage's output after its last residual add (AT points)
    probes: list[torch.Tensor]  # each block's residual-branch output (Fisher potential probes)


class Network(nn.Module):
    def __init__(self, spec: NetworkSpec, generator: torch.Generator | None = None):
        super().__init__()
        arch = spec.arch
        self._adopt(
            spec,
            build_sequence(arch.stem),
            [build_block(bt, s.cin, s.cout, s.stride) for bt, s in zip(spec.genotype, arch.slots)],
            build_sequence(arch.head),
            build_layer(Classifier(arch.features, spec.num_classes)),
        )
        initialise(self, generator)

    @classmethod
    def assemble(
        cls, spec: NetworkSpec, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module, classifier: nn.Module
    ) -> Network:
        """A network of modules built elsewhere, taken as they are (not initialised): scoring's
        module bank (search/bank.py) re-initialises them itself."""
        network = cls.__new__(cls)
        nn.Module.__init__(network)
        network._adopt(spec, stem, blocks, head, classifier)
        return network

    def _adopt(self, spec, stem, blocks, head, classifier) -> None:
        # The order of these assignments is the order of `modules()`, so of `initialise`'s draws.
        self.spec = spec
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.classifier = classifier
        self.stage_ends = frozenset(spec.arch.stage_ends)

    def forward_intermediates(self, x: torch.Tensor) -> Intermediates:
        stages, probes = [], []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x, probe = block(x)
            probes.append(probe)
            if i in self.stage_ends:
                stages.append(x)
        return Intermediates(self.classifier(self.head(x)), stages, probes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x).logits


class InitialValue(NamedTuple):
    """How `initialise` sets one tensor: drawn from N(a, b) ("normal") or U(a, b) ("uniform")
    with the generator, or filled with a ("fill")."""

    tensor: torch.Tensor
    law: str
    a: float
    b: float = 0.0


def initial_values(model: nn.Module) -> list[InitialValue]:
    """docs/paper.md s.3: conv ~ N(0, sqrt(2 / (k*k*out))), BN weight 1 bias 0, linear bias 0.

    Linear weights keep PyTorch's default law U(-1/sqrt(in), 1/sqrt(in)). The list is in the
    order of `model.modules()`, the order in which `initialise` draws: a seed fixes every value
    only together with this order (scoring's module bank replays it, search/bank.py).
    """
    values = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            values.append(InitialValue(m.weight, "normal", 0.0, math.sqrt(2.0 / fan_out)))
        elif isinstance(m, nn.BatchNorm2d):
            values += [InitialValue(m.weight, "fill", 1.0), InitialValue(m.bias, "fill", 0.0)]
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            values += [InitialValue(m.weight, "uniform", -bound, bound), InitialValue(m.bias, "fill", 0.0)]
    return values


@torch.no_grad()
def set_initial_value(value: InitialValue, target: torch.Tensor, generator: torch.Generator | None) -> None:
    """Draw or fill `target` (the value's tensor, or a host stand-in of its shape) by its law."""
    if value.law == "normal":
        target.normal_(value.a, value.b, generator=generator)
    elif value.law == "uniform":
        target.uniform_(value.a, value.b, generator=generator)
    else:
        target.fill_(value.a)


def initialise(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Every conv, BN and linear parameter of `model` by `initial_values`, drawn from `generator`
    so that a seed alone fixes the whole initialisation."""
    for value in initial_values(model):
        set_initial_value(value, value.tensor, generator)


def build_model(
    arch: str | Architecture,
    genotype: GenotypeLike = None,
    num_classes: int = 10,
    seed: int | None = None,
) -> Network:
    """Build `arch` with one block type per block (None: all S, the teacher; one name: all of it).

    With `seed` the initialisation is drawn from its own generator, independent of global state.
    """
    spec = NetworkSpec.create(arch, genotype, num_classes)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return Network(spec, generator)
