"""Benchmark: one CIFAR-sized training epoch of augmentation, batched on the device vs per image.

`blockswap` holds small datasets as uint8 tensors and crops/flips/cuts out whole batches at once
(loader.TensorBatches). The comparison is torchvision's per-image transforms through a
DataLoader, the usual way, with the same augmentation (pad-4 crop, flip, normalise, Cutout 16).

    python bench/augmentation.py --images 50000 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torchvision import transforms

from blockswap.data.augmentation import Augmentation
from blockswap.data.datasets import CIFAR10_MEAN, CIFAR10_STD
from blockswap.data.loader import TensorBatches
from blockswap.data.splits import ImageTensors
from blockswap.provenance import provenance


class Cutout:
    """Per-image Cutout (the reference implementation's behaviour) for the per-image pipeline."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        y, x = torch.randint(h, (1,)).item(), torch.randint(w, (1,)).item()
        half = self.size // 2
        img = img.clone()
        img[:, max(0, y - half) : min(h, y + half), max(0, x - half) : min(w, x + half)] = 0
        return img


class PerImage(torch.utils.data.Dataset):
    def __init__(self, data: ImageTensors):
        self.data = data
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ConvertImageDtype(torch.float32),
                transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
                Cutout(16),
            ]
        )

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(self.data.images[i]), self.data.labels[i]


def epoch_seconds(loader) -> float:
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    data = ImageTensors(
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (args.images,), generator=generator),
    )
    batched = TensorBatches(
        data, CIFAR10_MEAN, CIFAR10_STD, args.batch_size, augmentation=Augmentation.paper(32), shuffle=True
    )
    per_image = torch.utils.data.DataLoader(PerImage(data), batch_size=args.batch_size, shuffle=True)
    b, p = epoch_seconds(batched), epoch_seconds(per_image)
    print(
        json.dumps(
            {
                "images": args.images,
                "batched_seconds": round(b, 3),
                "per_image_seconds": round(p, 3),
                "speedup": round(p / b, 1),
                "provenance": provenance(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
