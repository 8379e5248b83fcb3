"""Small datasets written in the originals' on-disk formats, for loading tests."""

import pickle
import tarfile
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A tiny `cifar-10-batches-py` folder: 5 training batches and a test batch, as pickles."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, fh)
    return folder


def write_cifar10_archive(root: Path) -> Path:
    """`cifar-10-python.tar.gz` as distributed: the batches folder, tarred and gzipped."""
    staging = root / "staging"
    folder = write_cifar10(staging)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_svhn(root: Path, n: int = 12, seed: int = 0) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = root / "svhn"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, where 10 means digit 0
        savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y})
    return folder


def write_cifar100(root: Path, per_split: int = 40, seed: int = 0) -> Path:
    """A tiny `cifar-100-python` folder: `train` and `test` pickles with fine and coarse labels, and `meta`."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        batch = {
            b"filenames": [f"{i}.png".encode() for i in range(per_split)],
            b"batch_label": f"{name} batch".encode(),
            b"fine_labels": rng.integers(0, 100, per_split).tolist(),
            b"coarse_labels": rng.integers(0, 20, per_split).tolist(),
            b"data": rng.integers(0, 256, (per_split, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump(
            {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
            },
            fh,
        )
    return folder


def write_imagenet(root: Path, classes: int = 1000, per_class: int = 1, size=(48, 40), seed: int = 0) -> Path:
    """A tiny ImageNet in the layout the loader reads: `imagenet/{train,val}/<wnid>/*.JPEG`, real JPEG
    files (random noise) of a non-square size, `classes` synset folders each with `per_class` images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "imagenet"
    for split in ("train", "val"):
        for c in range(classes):
            wnid = f"n{c:08d}"
            target = folder / split / wnid
            target.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(target / f"{wnid}_{i}.JPEG", quality=75)
    return folder


def write_torchvision_resnet34(path: Path, seed: int = 0) -> Path:
    """A randomly initialised torchvision ResNet-34 state dict, saved the way torchvision's own
    weight files are (a plain state dict), standing in for the pretrained ImageNet weights."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    return path


def write_teacher_weights(path: Path, source: str, builder: str, classes: int, seed: int = 0) -> Path:
    """A randomly initialised torchvision or timm network with `classes` outputs (a user's
    fine-tuned model), saved in its library's format: a plain state dict (torch.save) for a .pth,
    safetensors (timm's files on the Hugging Face hub) for a .safetensors path. Its BN affine
    parameters are randomised and its running statistics are those of its own activations on
    random images, as a trained network's are of its data (so that it is sane in eval mode)."""
    import torch

    torch.manual_seed(seed)
    if source == "timm":
        import timm

        net = timm.create_model(builder, pretrained=False, num_classes=classes)
    else:
        import torchvision

        net = getattr(torchvision.models, builder)(weights=None, num_classes=classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.momentum = None  # a cumulative average over the calibration batches
        net.train()
        for _ in range(2):
            net(torch.randn(8, 3, 32, 32))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    return path


def write_image_folder(root: Path, classes: int = 3, per_class: int = 12, size=(40, 36), seed: int = 0) -> Path:
    """A user's images: `root/<class>/*.png`, random noise with a per-class tint (so that a network can
    tell the classes apart a little), of a non-square size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        target = root / f"class-{c}"
        target.mkdir(parents=True)
        tint = rng.integers(0, 256, 3)
        for i in range(per_class):
            noise = rng.integers(0, 96, (size[1], size[0], 3))
            pixels = np.clip(tint * 0.6 + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(target / f"{i}.png")
    return root
