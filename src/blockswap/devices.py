"""Device choice: `auto` takes CUDA, then Apple's MPS, then the CPU.

With several visible CUDA devices (a multi-GPU workstation running `snakemake --resources gpu=G`),
`auto` claims a free one through `gpus.claim`, so parallel jobs never share a GPU.
"""

from __future__ import annotations

import torch

from . import gpus
from .errors import BlockswapError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"  # for every --device flag


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if count > 1:
                return torch.device(f"cuda:{gpus.claim([str(i) for i in range(count)])}")
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES[1:]:
        raise BlockswapError(f"unknown device {name!r}; allowed: {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BlockswapError("device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BlockswapError("device mps was asked for but MPS is not available; use --device cpu or auto")
    return torch.device(name)
