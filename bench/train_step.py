"""Benchmark: training throughput (images/s) of WRN-40-2 on CIFAR-sized input, and one digits epoch
of the bundled default's teacher (WRN-16-2 at 16 px), both through `blockswap.training.train.Trainer`'s step.

    python bench/train_step.py --steps 5 --device cpu
    python bench/train_step.py --steps 50 --device cuda --fast      # bf16 + channels_last + compile
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from blockswap.data.loaders import load_dataset
from blockswap.data.splits import ImageTensors
from blockswap.devices import resolve_device
from blockswap.provenance import provenance
from blockswap.training.config import TrainConfig
from blockswap.training.train import Trainer


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cifar(images: int):
    data = load_dataset("digits", image_size=32)  # real container, CIFAR-sized random content
    g = torch.Generator().manual_seed(0)
    data.train = ImageTensors(
        torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (images,), generator=g),
    )
    return data


def epoch_seconds(trainer: Trainer, device) -> float:
    sync(device)
    start = time.perf_counter()
    trainer.train_epoch(0)
    sync(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="WRN-40-2 minibatches of 128 to time")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast", action="store_true", help="fast mode: bf16 autocast, channels_last, compile")
    args = parser.parse_args()
    device = resolve_device(args.device)
    fast = dict(bf16=True, channels_last=True, compile=True) if args.fast else {}
    report = {"device": str(device), "mode": "fast" if args.fast else "paper"}
    with tempfile.TemporaryDirectory() as tmp:
        batch = 128
        data = synthetic_cifar(batch * (args.steps + 1))
        cfg = TrainConfig(arch="wrn-40-2", dataset="digits", batch_size=batch, **fast)
        trainer = Trainer(cfg, tmp, device, data, progress=False)
        data.train = ImageTensors(data.train.images[:batch], data.train.labels[:batch])
        epoch_seconds(trainer, device)  # warm-up (and compilation in fast mode)
        data.train = synthetic_cifar(batch * args.steps).train
        seconds = epoch_seconds(trainer, device)
        report["wrn40_2_cifar_images_per_second"] = round(batch * args.steps / seconds, 1)
        digits = load_dataset("digits", image_size=16)
        teacher = Trainer(
            TrainConfig(arch="wrn-16-2", dataset="digits", image_size=16, **fast),
            tmp + "/d",
            device,
            digits,
            progress=False,
        )
        epoch_seconds(teacher, device)
        report["digits_epoch_seconds_wrn16_2"] = round(epoch_seconds(teacher, device), 3)
        report["digits_train_images"] = len(digits.train)
    report["provenance"] = provenance(device=device)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
