"""`count`: params, MACs and paper ops of a built model (measured) or of a spec (computed).

The spec path (`NetworkSpec.cost`) is the fast one used for sampling. The module path runs one
forward pass with hooks and reads the real tensor shapes, so tests can hold the two against each
other. Conventions: docs/paper.md s.5 and `layers.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from .architectures import NetworkSpec
from .layers import Cost
from .modules import PreActivationModule


def _conv_cost(m: nn.Conv2d, inputs, output) -> Cost:
    k = m.kernel_size[0] * m.kernel_size[1]
    macs = m.in_channels // m.groups * m.out_channels * k * output.shape[2] * output.shape[3]
    return Cost(macs=macs, ops=macs)


def _linear_cost(m: nn.Linear, inputs, output) -> Cost:
    weights = m.in_features * m.out_features
    bias = m.out_features if m.bias is not None else 0
    return Cost(macs=weights, ops=weights + bias)


def _preactivation_cost(m: PreActivationModule, inputs, output) -> Cost:
    return Cost(ops=inputs[0][0].numel())


def _maxpool_cost(m: nn.MaxPool2d, inputs, output) -> Cost:
    k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0] * m.kernel_size[1]
    k = k * k if isinstance(m.kernel_size, int) else k
    return Cost(ops=output[0].numel() * k)


# Module type -> per-sample cost of one call, from the shapes seen in the forward pass.
MODULE_COSTS = {
    nn.Conv2d: _conv_cost,
    nn.Linear: _linear_cost,
    PreActivationModule: _preactivation_cost,
    nn.MaxPool2d: _maxpool_cost,
}


def count_built(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3) -> Cost:
    """Count a built model: trainable parameters, plus hooks on one forward pass of one image."""
    total = Cost(params=sum(p.numel() for p in model.parameters() if p.requires_grad))
    handles = []

    def hook(module, inputs, output):
        nonlocal total
        total = total + MODULE_COSTS[type(module)](module, inputs, output)

    for module in model.modules():
        if type(module) in MODULE_COSTS:
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def count(model_or_spec: nn.Module | NetworkSpec, input_size: tuple[int, int] = (32, 32)) -> Cost:
    """Params, MACs and paper ops at `input_size` (H, W): computed for a `NetworkSpec`, measured
    for a built `nn.Module`. Both give identical numbers for the same network."""
    if isinstance(model_or_spec, NetworkSpec):
        return model_or_spec.cost(tuple(input_size))
    return count_built(model_or_spec, tuple(input_size))
