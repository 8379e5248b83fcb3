"""The PyTorch modules built from the layer and block specs.

layers.py and blocks.py describe every layer and block as frozen records that cost themselves
without torch (so that counting, planning and the tables never import it); this module turns
them into modules: one builder per layer spec, one module class per block wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .blocks import BlockType
from .layers import Classifier, Conv, LayerSpec, MaxPool, Norm, PreActivation, Relu


class PreActivationModule(nn.Sequential):
    """BN + ReLU at block level (before each unit of a wrapper, the network's final one, the
    ImageNet stem). A class of its own so the hook counter can find the ReLUs the paper counts."""


def _conv(spec: Conv) -> nn.Module:
    return nn.Conv2d(
        spec.cin, spec.cout, spec.kernel, stride=spec.stride, padding=spec.padding, groups=spec.groups, bias=False
    )


# Layer spec -> the module built from it.
LAYER_MODULES: dict[type, Callable[[LayerSpec], nn.Module]] = {
    Conv: _conv,
    Norm: lambda spec: nn.BatchNorm2d(spec.channels),
    Relu: lambda spec: nn.ReLU(inplace=True),
    PreActivation: lambda spec: PreActivationModule(nn.BatchNorm2d(spec.channels), nn.ReLU(inplace=True)),
    MaxPool: lambda spec: nn.MaxPool2d(spec.kernel, stride=spec.stride, padding=spec.padding),
    Classifier: lambda spec: nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.features, spec.classes)
    ),
}


def build_layer(spec: LayerSpec) -> nn.Module:
    return LAYER_MODULES[type(spec)](spec)


def build_sequence(layers: Iterable[LayerSpec]) -> nn.Sequential:
    return nn.Sequential(*(build_layer(layer) for layer in layers))


class Block(nn.Module):
    """A wrapped block. `forward` returns (output, probe): the probe is the residual branch's
    output before the shortcut is added, where the Fisher potential is measured (docs/paper.md s.2)."""

    def __init__(self, block_type: BlockType, cin: int, cout: int, stride: int):
        super().__init__()
        layout = block_type.layout(cin, cout, stride)
        self.block_type = block_type
        self.in_channels, self.out_channels, self.stride = cin, cout, stride
        self.preacts = nn.ModuleList(build_layer(p) for p in layout.preacts)
        self.units = nn.ModuleList(build_sequence(u) for u in layout.units)
        self.shortcut = build_layer(layout.shortcut) if layout.shortcut is not None else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activated = self.preacts[0](x)
        # WRN convention: a projection shortcut sees the pre-activated input, identity the raw one.
        residual = x if self.shortcut is None else self.shortcut(activated)
        branch = self.units[0](activated)
        for preact, unit in zip(self.preacts[1:], self.units[1:]):
            branch = unit(preact(branch))
        return residual + branch, branch


class PostActivationBlock(nn.Module):
    """A torchvision / timm ResNet block: relu(unit(x) + shortcut(x)). `forward` returns (output,
    probe) as `Block` does, the probe being the unit's output before the sum."""

    def __init__(self, block_type: BlockType, cin: int, cout: int, stride: int):
        super().__init__()
        layout = block_type.layout(cin, cout, stride)
        self.block_type = block_type
        self.in_channels, self.out_channels, self.stride = cin, cout, stride
        self.unit = build_sequence(layout.unit)
        self.shortcut = build_sequence(layout.shortcut) if layout.shortcut is not None else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        branch = self.unit(x)
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.relu(residual + branch), branch


# Block wrapper (blocks.WRAPPERS) -> the module class of its blocks.
BLOCK_MODULES: dict[str, type[nn.Module]] = {
    "basic": Block,
    "bottleneck": Block,
    "post-activation": PostActivationBlock,
}


def build_block(block_type: BlockType, cin: int, cout: int, stride: int) -> nn.Module:
    """The module of one block of `block_type` at these widths, wrapped as its family says."""
    return BLOCK_MODULES[block_type.spec.wrapper](block_type, cin, cout, stride)
