"""In-memory splits: the `Dataset` record, uint8 image tensors, seeded hold-outs, channel statistics.

Shared by the built-in loaders (datasets.py) and the user's image trees (folder.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BlockswapError

# Every split this package makes itself (digits' train/validation/test, the validation hold-out of
# CIFAR, SVHN and image folders, a folder's test hold-out) is drawn with this seed, never with the
# experiment seed: changing the seed of a run must not change which images it is tested on.
SPLIT_SEED = 0


@dataclass
class ImageTensors:
    """A whole split in memory: uint8 images (N, 3, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: object
    test: object
    val: object | None = None
    source: dict = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) floats in [0, 1] -> (N, 3, size, size) uint8 (antialiased when shrinking)."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (sample) standard deviation of uint8 images, on the 0..1 scale."""
    x = images.float() / 255
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def holdout(train: ImageTensors, val_size: int, seed: int = SPLIT_SEED):
    """Hold out the last `val_size` images of a fixed permutation of the training set."""
    if not val_size:
        return train, None
    if not 0 < val_size < len(train):
        raise BlockswapError(f"val_size must be between 0 and {len(train) - 1}, got {val_size}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    keep, held = order[:-val_size].sort().values, order[-val_size:].sort().values
    return (
        ImageTensors(train.images[keep], train.labels[keep]),
        ImageTensors(train.images[held], train.labels[held]),
    )
