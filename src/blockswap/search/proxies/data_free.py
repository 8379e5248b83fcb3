"""Proxies that read no data: the network sees synthetic inputs drawn from the proxy's own seeded
stream (`Measurement.generator`), never the minibatch."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Measurement, weight_layers


def bypass_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d replaced by an identity, in place (SynFlow is defined on the network
    without normalisation: zero-cost-nas scores synflow on a copy built with bn=False)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    return model


def synflow(m: Measurement) -> float:
    """SynFlow (Tanaka et al. 2020) as zero-cost-nas scores a network: BN bypassed (identity),
    float64, every parameter replaced by its absolute value, one all-ones input of the network's
    input shape, R = sum of the output; score = sum over conv/linear weights of |theta * dR/dtheta|.

    Stored as log10(score): raw scores grow geometrically with depth (1e30 and beyond). The sum is
    taken in log space (logsumexp of log|theta * dR/dtheta|), so it cannot overflow; a score of 0
    (no path carries signal) is log10 0 = -inf, stored as the floor (base.FLOOR); a non-finite
    gradient is an error."""
    model = bypass_batchnorm(m.model).double()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    weights = [layer.weight for layer in weight_layers(model)]
    ones = torch.ones((1,) + tuple(m.images.shape[1:]), dtype=torch.float64, device=m.images.device)
    grads = torch.autograd.grad(model(ones).sum(), weights)
    terms = torch.cat([(w.detach() * g).abs().flatten() for w, g in zip(weights, grads)])
    return float(torch.logsumexp(terms.log(), 0)) / math.log(10)


ZEN_MIXUP_GAMMA = 1e-2  # the paper's alpha


def pre_gap_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map global average pooling reads (Zen-NAS's `forward_pre_GAP`): the input of
    the classifier, so after the head (a WRN's final BN-ReLU). One forward pass of the whole
    network: its BN layers see `x` exactly once."""
    captured = []
    handle = model.classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


@torch.no_grad()
def zen(m: Measurement) -> float:
    """Zen-score (Lin et al., Zen-NAS, ICCV 2021), Algorithm 1 of the paper: weights re-drawn from
    N(0, 1) (conv and linear; biases 0; BN weight 1, bias 0, running statistics reset), BN in
    training mode, x and eps standard Gaussian of the minibatch's shape,
    Delta = mean_n sum |f(x) - f(x + 0.01 eps)| (f: the pre-GAP feature map, `pre_gap_map`: after
    a WRN's final BN-ReLU), score = log Delta + sum over BN layers of log sqrt(mean_c running_var_c)
    after the two forward passes. Each sigma undoes a normalisation f went through, as in Zen-NAS,
    whose networks end in conv-BN-ReLU before pooling; every BN layer here is upstream of f.

    Choices: the L1 norm of Zen-NAS's code (the paper writes a Frobenius norm); one draw per
    candidate (the code averages `repeat` draws; one seeded draw is what every other proxy's
    single minibatch is). Re-drawing the weights makes zen a function of the architecture only:
    the same at every k."""
    model = m.model.train()
    generator = m.generator("zen")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.zero_()
            module.reset_running_stats()
    shape = tuple(m.images.shape)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    place = {"device": m.images.device, "dtype": m.images.dtype}
    layout = (
        torch.channels_last if m.images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    )
    f = pre_gap_map(model, x.to(**place).contiguous(memory_format=layout))
    f_mixed = pre_gap_map(model, (x + ZEN_MIXUP_GAMMA * eps).to(**place).contiguous(memory_format=layout))
    delta = float((f - f_mixed).abs().flatten(1).sum(1).mean())
    bn = sum(0.5 * math.log(float(b.running_var.mean())) for b in model.modules() if isinstance(b, nn.BatchNorm2d))
    return (math.log(delta) if delta > 0 else -math.inf) + bn
