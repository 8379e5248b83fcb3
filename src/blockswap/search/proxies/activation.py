"""Proxies read from activations (or the input Jacobian) of one forward pass, BatchNorm in
training mode, on the proxy's own copy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import BlockswapError
from .base import Measurement

# Every way a ReLU is called: nn.ReLU (F.relu, in place or not), the functional forms, the
# tensor methods. A TorchFunctionMode sees the outermost call only (the mode is off while the
# intercepted call runs), so F.relu -> torch.relu_ is one ReLU, not two.
RELU_CALLS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})


class ReluCodes(TorchFunctionMode):
    """Accumulates NASWOT's kernel over every ReLU called while the mode is active:
    K_H += c c^T + (1 - c)(1 - c)^T with c the binary code (x > 0) of the ReLU's INPUT per example,
    read before the call (nn.ReLU(inplace=True) overwrites its input)."""

    def __init__(self):
        super().__init__()
        self.kernel = None
        self.relus = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in RELU_CALLS:
            x = args[0] if args else kwargs["input"]
            codes = (x.detach() > 0).flatten(1).float()
            # (1-c)(1-c)^T = U - s 1^T - 1 s^T + c c^T (s: each example's count of ones, U units):
            # one matrix product instead of two. Exact: products of 0/1 summed in float32 are
            # whole numbers below 2^24 for any layer of fewer than 16.7M units per example.
            ones = codes.sum(1, keepdim=True)
            k = (2 * (codes @ codes.T) - ones - ones.T + codes.shape[1]).double()
            self.kernel = k if self.kernel is None else self.kernel + k
            self.relus += 1
        return func(*args, **kwargs)


@torch.no_grad()
def relu_kernel(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """NASWOT's K_H on `images` and the number of ReLU calls it was accumulated over."""
    with ReluCodes() as codes:
        model(images)
    return codes.kernel, codes.relus


def naswot(m: Measurement) -> float:
    """NASWOT: log |K_H| (slogdet) with K_H[i, j] = number of ReLU units on which examples i and j
    have the same binary code = sum over ReLUs of (c c^T + (1-c)(1-c)^T). BN in training mode
    (the network as Mellor et al.'s code scores it). A singular K_H (two examples with identical
    codes everywhere) has log 0 = -inf: stored as the floor."""
    kernel, _ = relu_kernel(m.model.train(), m.images)
    if kernel is None:
        return -math.inf  # no ReLU: every pair agrees on nothing, K_H = 0
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


JACOB_COV_K = 1e-5


def jacob_cov(m: Measurement) -> float:
    """Jacobian covariance (Mellor et al. 2020 arXiv v1; zero-cost-nas's jacob_cov): J = d(sum of
    the outputs)/d(input), one row per example (BN in training mode, so rows also carry the batch
    statistics' coupling, as zero-cost-nas's backward of ones does); Sigma = Pearson correlation of
    the rows; score = -sum_i (log(lambda_i + k) + 1/(lambda_i + k)), k = 1e-5, lambda the
    eigenvalues of Sigma (symmetric solver, float64). A row of zero variance makes Sigma undefined
    (zero-cost-nas returns NaN): stored as the floor."""
    model = m.model.train()
    x = m.images.detach().clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(model(x).sum(), x)
    rows = jacobian.reshape(x.shape[0], -1).double()
    corr = torch.corrcoef(rows)
    if not torch.isfinite(corr).all():
        return -math.inf
    eigenvalues = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(eigenvalues + JACOB_COV_K) + 1 / (eigenvalues + JACOB_COV_K)).sum())


def one_value_refused(name: str):
    """A forward pre-hook for MeCo's BatchNorm layer `name`: MeCo feeds ONE example, so a 1 x 1 map
    leaves the layer one value per channel and no batch statistics. PyTorch refuses it, and a NaN
    in its place could not be stored (a scores file holds finite numbers). Every candidate of one
    architecture and image size meets the same 1 x 1 map, so it is a setting to change: one line."""

    def check(module, inputs):
        x = inputs[0]
        if x.numel() == x.shape[1]:
            raise BlockswapError(
                f"proxy meco feeds one example, and BatchNorm layer {name} sees a 1 x 1 map of it "
                "(one value per channel: no batch statistics); score larger images (--image-size) "
                "or leave meco out of --proxies"
            )

    return check


@torch.no_grad()
def meco(m: Measurement) -> float:
    """MeCo (Jiang et al., NeurIPS 2023): one standard Gaussian example of the network's input
    shape, BN in training mode; for every layer's feature map f (C x H x W) the Pearson
    correlation P of its C channels (rows of length HW), NaN/inf entries set to 0 (a constant
    channel, as MeCo's code does), and score = sum over layers of lambda_min(P).

    Layers: every leaf module whose output is a feature map (N, C, H, W): each conv, BN, ReLU and
    pooling layer. MeCo's code hooks every module, containers included; a container's output is
    its last layer's, counted again, and our blocks return (output, probe) pairs that code cannot
    read, so leaves only. All channels are used (MeCo_opt's channel sampling is not). A BatchNorm
    layer that meets a 1 x 1 map (small images) is an error naming it (`one_value_refused`)."""
    model = m.model.train()
    x = torch.randn((1,) + tuple(m.images.shape[1:]), generator=m.generator("meco"), dtype=torch.float64)
    values = []

    def hook(module, inputs, output):
        # At once: a later in-place ReLU would overwrite a BN's output.
        # A 1 x 1 map (global pooling) has no per-channel variance: its correlation is all NaN,
        # 0 under MeCo's rule, lambda_min 0; it adds nothing and is skipped.
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2] * output.shape[3] > 1:
            f = output[0].detach().double().reshape(output.shape[1], -1)
            # One channel (a bottleneck of width 1): corrcoef returns a scalar; P is then 1 x 1.
            corr = torch.nan_to_num(torch.corrcoef(f).reshape(f.shape[0], f.shape[0]), nan=0.0, posinf=0.0, neginf=0.0)
            values.append(float(torch.linalg.eigvalsh(corr).min()))

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [module.register_forward_hook(hook) for module in leaves]
    handles += [
        module.register_forward_pre_hook(one_value_refused(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    try:
        model(x.to(device=m.images.device, dtype=m.images.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return sum(values)
