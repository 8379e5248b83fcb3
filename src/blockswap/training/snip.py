"""SNIP: single-shot pruning of connections at initialisation (Lee, Ajanthan & Torr, ICLR 2019),
the pruning baseline of BlockSwap's Table 2 (docs/paper.md s.6, "SNIP" rows at the BlockSwap budgets).

The saliency of a connection j is |dL/dc_j| at c = 1, where c_j multiplies weight w_j; that is
|w_j * dL/dw_j|, with L the mean cross-entropy of one minibatch on the freshly initialised network
(BN in train mode, i.e. batch statistics). SNIP keeps the top-k connections of the whole network
by saliency (one global threshold, not per layer); its normalisation by the sum of saliencies does
not change the ranking and is omitted.

Prunable weights are the weights of every convolution (stem, blocks and shortcuts), as in the
BlockSwap authors' SNIP script, which masks convolutions only. The classifier, BN parameters and
biases are never pruned, so a parameter budget `keep_params` counts them in full and k is whatever
is left of the budget after them: the pruned network has exactly `keep_params` remaining parameters.
"""

from __future__ import annotations

import copy
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BlockswapError

PRUNABLE = (nn.Conv2d,)  # the classifier (nn.Linear) stays dense


def prunable_names(model: nn.Module) -> list[str]:
    """Names (as in model.named_parameters()) of every convolution weight, in network order."""
    params = dict(model.named_parameters())
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            name = f"{module_name}.weight" if module_name else "weight"
            # named_parameters() lists a shared weight once, under its first name; skip the aliases.
            if name in params and name not in names:
                names.append(name)
    if not names:
        raise BlockswapError("the model has no convolution weights for SNIP to prune")
    return names


def connection_saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """|w * dL/dw| for every prunable weight, on one minibatch, in train mode (batch statistics).

    Only the gradients of the prunable weights are taken (torch.autograd.grad), so no .grad is left
    on the model; its mode and BN running statistics are restored, so computing the saliency leaves
    the network exactly as initialised.
    """
    names = prunable_names(model)
    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    frozen = [n for n, w in zip(names, weights) if not w.requires_grad]
    if frozen:
        raise BlockswapError(f"SNIP needs gradients of every prunable weight, but {frozen[0]} does not require grad")
    was_training = model.training
    # The train-mode forward pass updates BN running statistics; keep a copy to put back.
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        model.train()
        loss = F.cross_entropy(model(images), labels)
        grads = torch.autograd.grad(loss, weights)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    return {n: (w.detach() * g).abs() for n, w, g in zip(names, weights, grads)}


def snip_masks(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, keep_params: int
) -> dict[str, torch.Tensor]:
    """0/1 masks (same shape and dtype as each prunable weight) that leave exactly `keep_params`
    parameters: every BN parameter, bias and classifier weight, plus the globally most salient
    convolution weights.

    Saliencies are ranked in float64 and ties broken by network order (earlier layers, then lower
    flat index, first): the masks are a deterministic function of the weights and the minibatch,
    whatever the device, memory layout or dtype of `model`.
    """
    if not isinstance(keep_params, numbers.Integral) or isinstance(keep_params, bool):
        raise BlockswapError(f"keep_params must be a whole number of parameters, got {keep_params!r}")
    names = prunable_names(model)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(params[n].numel() for n in names)
    fixed = total - prunable
    if not fixed <= keep_params <= total:
        raise BlockswapError(
            f"keep_params must be between {fixed} (the classifier, BN parameters and biases, which SNIP "
            f"never prunes) and {total} (every parameter), got {keep_params}"
        )
    # Rank in float64, on a copy: float32 saliencies differ by ~1e-3 relative between memory
    # layouts and devices (TF32 on GPUs), which swaps thousands of WRN-40-2 weights across the
    # threshold; in float64 the masks are the same wherever they are computed.
    saliency = connection_saliency(copy.deepcopy(model).double(), images.double(), labels)
    flat = torch.cat([saliency[n].flatten() for n in names])
    if not torch.isfinite(flat).all():
        raise BlockswapError("SNIP saliency is not finite (the loss or its gradient overflowed); check the minibatch")
    keep = int(keep_params) - fixed
    order = torch.sort(flat, descending=True, stable=True).indices
    kept = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    kept[order[:keep]] = True
    masks, start = {}, 0
    for n in names:
        w = params[n]
        masks[n] = kept[start : start + w.numel()].view_as(w).to(w.dtype)
        start += w.numel()
    return masks


def _check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise BlockswapError(f"mask for {name!r} but the model has no such parameter")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise BlockswapError(
                f"mask for {name} has shape {tuple(mask.shape)} but the weight is {tuple(params[name].shape)}"
            )
    return params


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place (weight *= mask). Re-apply after every optimiser step to
    keep them pruned: momentum and gradients would otherwise grow them back."""
    params = _check_masks(model, masks)
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))


def remaining_params(model: nn.Module, masks: dict[str, torch.Tensor]) -> int:
    """Parameters left after pruning: every parameter, less the zeros of the masks."""
    params = _check_masks(model, masks)
    return sum(int(torch.count_nonzero(masks[n])) if n in masks else p.numel() for n, p in params.items())
