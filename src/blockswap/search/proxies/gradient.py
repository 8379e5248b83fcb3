"""Gradient-based zero-cost proxies, as zero-cost-nas (Abdelfattah et al., ICLR 2021) defines them
for NAS, plus ZiCo. All on the proxy's own copy, BatchNorm in training mode, the minibatch's
mean-reduced cross-entropy, scored over the conv and linear layers' weights (biases and BN
parameters are not scored, as in zero-cost-nas)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import BlockswapError
from .base import Measurement, weight_layers


def _weight_grads(m: Measurement, create_graph: bool = False):
    model = m.model.train()
    weights = [layer.weight for layer in weight_layers(model)]
    loss = F.cross_entropy(model(m.images), m.labels)
    return weights, torch.autograd.grad(loss, weights, create_graph=create_graph)


def fisher_zc(m: Measurement) -> float:
    """zero-cost-nas's "fisher": the Fisher potential's per-channel saliency taken at EVERY conv
    and linear output instead of at block probes, then spread as zero-cost-nas spreads it.

    zero-cost-nas computes Delta_c = 0.5 * mean_n (sum_hw a*g)^2 per output channel c of a layer,
    then broadcasts Delta_c to every weight of that channel (a tensor of shape weight.shape[1:])
    and sums all weights: each channel therefore counts fan_in times, fan_in = weight[c].numel()
    (cin/groups * kh * kw for a conv, in_features for a linear layer)."""
    model = m.model.train()
    outputs = {}  # by layer: the call order is not the module order (a block's shortcut runs first)

    def keep(module, inputs, output):
        if module in outputs:
            raise BlockswapError(f"fisher_zc: {type(module).__name__} is called twice in one forward pass")
        outputs[module] = output
        # Later in-place ops (nn.ReLU(inplace=True)) then act on the clone, so `output` stays this
        # layer's own activation and autograd.grad below is dL/d(this output).
        return output.clone()

    handles = [layer.register_forward_hook(keep) for layer in weight_layers(model)]
    try:
        loss = F.cross_entropy(model(m.images), m.labels)
    finally:
        for handle in handles:
            handle.remove()
    layers = list(outputs)
    grads = torch.autograd.grad(loss, [outputs[layer] for layer in layers])
    total = 0.0
    for layer, g in zip(layers, grads):
        a = outputs[layer]
        per_example_channel = (a.detach() * g).flatten(2).sum(2) if a.dim() > 2 else a.detach() * g
        delta = per_example_channel.square().mean(0) * 0.5
        total += float(delta.sum()) * layer.weight[0].numel()
    return total


def snip(m: Measurement) -> float:
    """SNIP connection sensitivity: sum over weights of |theta * dL/dtheta| (zero-cost-nas's
    weight-mask gradient, which equals theta * dL/dtheta)."""
    weights, grads = _weight_grads(m)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads)))


def plain(m: Measurement) -> float:
    """zero-cost-nas's "plain": sum over weights of theta * dL/dtheta (signed)."""
    weights, grads = _weight_grads(m)
    return float(sum((w.detach() * g).sum() for w, g in zip(weights, grads)))


def grad_norm_zc(m: Measurement) -> float:
    """zero-cost-nas's "grad_norm": per conv/linear layer ||dL/dW||_2 (Frobenius), summed.
    On these networks the same weight tensors as Table 1's grad_norm (every tensor of dimension
    > 1 is a conv or linear weight), so the two coincide up to float rounding."""
    _, grads = _weight_grads(m)
    return float(sum(g.norm() for g in grads))


def grasp(m: Measurement) -> float:
    """GraSP in zero-cost-nas's convention: score = sum over weights of -theta * (H g), with g =
    dL/dW at the minibatch and H the Hessian of L with respect to the conv/linear weights (Hg by
    double backward). The sign is zero-cost-nas's (-theta * Hg, summed), used as is: higher is
    taken as better, as zero-cost-nas ranks every measure."""
    model = m.model.train()
    weights = [layer.weight for layer in weight_layers(model)]
    # First pass: g, held constant. Second pass: a fresh forward (as zero-cost-nas does), then
    # Hg = d/dW (g . dL/dW).
    g = torch.autograd.grad(F.cross_entropy(model(m.images), m.labels), weights)
    grads = torch.autograd.grad(F.cross_entropy(model(m.images), m.labels), weights, create_graph=True)
    z = sum((gi.detach() * gf).sum() for gi, gf in zip(g, grads))
    hg = torch.autograd.grad(z, weights)
    return float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg)))


ZICO_SPLITS = 2


def zico(m: Measurement) -> float:
    """ZiCo: per conv/linear layer, sum over its weights of mean_b |g_b| / std_b(g_b) over the
    minibatches b, log of that sum, summed over layers.

    The minibatch is split into ZICO_SPLITS = 2 contiguous halves, each its own gradient (as the
    zero-cost-nas port of ZiCo does, split_data=2); gradients are zeroed between halves, as
    ZiCo's own code does per batch. std is the population std (numpy's default, ddof = 0). As in
    ZiCo's code, weights whose std is 0 are left out of the sum, and a layer whose sum is then 0
    adds nothing (log 0 would be -inf)."""
    model = m.model.train()
    weights = [layer.weight for layer in weight_layers(model)]
    n = m.images.shape[0]
    per_split = []
    for s in range(ZICO_SPLITS):
        lo, hi = s * n // ZICO_SPLITS, (s + 1) * n // ZICO_SPLITS
        loss = F.cross_entropy(model(m.images[lo:hi]), m.labels[lo:hi])
        per_split.append([g.detach().double().flatten() for g in torch.autograd.grad(loss, weights)])
    total = 0.0
    for layer_grads in zip(*per_split):
        g = torch.stack(layer_grads)  # (splits, weights)
        std = g.std(0, unbiased=False)
        mean_abs = g.abs().mean(0)
        kept = std != 0
        layer_sum = float((mean_abs[kept] / std[kept]).sum())
        if layer_sum != 0:
            total += math.log(layer_sum)
    return total
