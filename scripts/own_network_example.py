"""What a practitioner brings to `blockswap compress`, made offline for the README's worked example:
a folder of their images and a torchvision ResNet-18 trained on them.

The images are scikit-learn's handwritten digits (1,797 scans, bundled with it) written as PNG
files in one folder per class. The network is torchvision's resnet18 with a 10-class head, trained
on those images as a user would train theirs (no pretrained weights can be downloaded here, so it
starts from torchvision's random initialisation), fed with torchvision's ImageNet normalisation,
and saved as a plain state dict. It trains on the training split `blockswap compress` makes of the
folder (the same seeded hold-out), so the compression's held-out test images stay unseen.

    python scripts/own_network_example.py --out example
    # -> example/images/<digit>/<n>.png, example/resnet18-digits.pth
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from blockswap.data.loader import epoch_batches, evaluation_batches
from blockswap.data.loaders import load_folder
from blockswap.networks.teacher_specs import IMAGENET_MEAN, IMAGENET_STD


def write_digits(folder: Path) -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image / 16 * 255).astype(np.uint8)  # 8x8 scans, 0..16
        Image.fromarray(pixels, mode="L").convert("RGB").save(target / f"{i}.png")
    return len(digits.target)


def train(images: Path, size: int, epochs: int, seed: int) -> tuple[torch.nn.Module, float]:
    data = load_folder(images, size, 0)
    data.mean, data.std = IMAGENET_MEAN, IMAGENET_STD  # the normalisation torchvision's ResNets take
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=data.num_classes)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for epoch in range(epochs):
        for group in optimiser.param_groups:
            group["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        net.train()
        for x, y in epoch_batches(data, 64, seed + epoch, "cpu", cutout=False, drop_last=True):
            optimiser.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimiser.step()
    net.eval()
    wrong = total = 0
    with torch.no_grad():
        for x, y in evaluation_batches(data, "val", 256):
            wrong += int((net(x).argmax(1) != y).sum())
            total += len(y)
    return net, 100.0 * wrong / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="example", help="folder for images/ and the weights file")
    parser.add_argument("--image-size", type=int, default=32, help="side the network sees (default 32)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    images = out / "images"
    print(f"{write_digits(images)} images -> {images}")
    net, val_error = train(images, args.image_size, args.epochs, args.seed)
    weights = out / "resnet18-digits.pth"
    torch.save(net.state_dict(), weights)
    print(f"torchvision resnet18, {val_error:.2f}% validation error -> {weights} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
