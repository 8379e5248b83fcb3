"""The loaders of the registered datasets (datasets.py): each reads its files into tensors, and
`load_dataset` picks one by name.

Small datasets are held whole as uint8 tensors (N, 3, H, W) and batched on the device (loader.py);
ImageNet is an ImageFolder read by workers. On-disk formats are in archives.py, the folder
layout of a user's own images in folder.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import BlockswapError
from . import archives
from .archives import CIFAR_ARCHIVES, SVHN_FILES
from .augmentation import PAPER_IMAGE_SIZE
from .datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DIGITS_DEFAULT_SIZE,
    DIGITS_FRACTIONS,
    IMAGENET_MEAN,
    IMAGENET_RESIZE,
    IMAGENET_SIZE,
    IMAGENET_STD,
    SVHN_MEAN,
    SVHN_STD,
    dataset_info,
)
from .folder import (
    FOLDER_DEFAULT_SIZE,
    FOLDER_TEST_FRACTION,
    FOLDER_VAL_FRACTION,
    class_folders,
    image_files,
    read_image,
    split_trees,
)
from .splits import SPLIT_SEED, Dataset, ImageTensors, channel_stats, holdout, resize_uint8

# --- digits -------------------------------------------------------------------------------------


def load_digits(data_dir=None, image_size=None, val_size=None, download=False) -> Dataset:
    # scikit-learn takes about 1 s to import: only when the digits are loaded
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    size = image_size or DIGITS_DEFAULT_SIZE
    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)  # pixel values are 0..16
    labels = torch.from_numpy(bunch.target).long()
    index = np.arange(len(labels))
    train_frac, val_frac, test_frac = DIGITS_FRACTIONS
    rest, test_idx = train_test_split(index, test_size=test_frac, stratify=labels.numpy(), random_state=SPLIT_SEED)
    train_idx, val_idx = train_test_split(
        rest,
        test_size=val_frac / (train_frac + val_frac),
        stratify=labels.numpy()[rest],
        random_state=SPLIT_SEED,
    )
    pixels = resize_uint8(images, size)

    def split(idx):
        idx = torch.from_numpy(np.sort(idx))
        return ImageTensors(pixels[idx], labels[idx])

    train = split(train_idx)
    # No published constants exist for upsampled digits: use the training split's own statistics.
    mean, std = channel_stats(train.images)
    return Dataset("digits", 10, size, mean, std, train, split(test_idx), split(val_idx), {"source": "sklearn"})


# --- CIFAR and SVHN -----------------------------------------------------------------------------


def _make_cifar_loader(name: str, classes: int, mean, std):
    def load(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
        archive = CIFAR_ARCHIVES[name]  # looked up per call, so a test can point it at a local mirror
        root = Path(data_dir)
        folder = root / archive.folder
        if not folder.is_dir():
            reason = archives.fetch(archive.url, root, archive.md5, extract=True) if download else None
            if not folder.is_dir():
                raise archives.missing(name, folder, archive.url, download, reason or "")
        train = ImageTensors(*archives.read_cifar_batches(folder, archive.train_files, archive.label_key))
        test = ImageTensors(*archives.read_cifar_batches(folder, archive.test_files, archive.label_key))
        train, val = holdout(train, val_size)
        return Dataset(name, classes, PAPER_IMAGE_SIZE, mean, std, train, test, val, {"path": str(folder)})

    return load


def load_svhn(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    root = Path(data_dir) / "svhn"
    splits = {}
    for split, remote in SVHN_FILES.items():
        path = root / remote.name
        if not path.is_file():
            reason = archives.fetch(remote.url, root, remote.md5, extract=False) if download else None
            if not path.is_file():
                raise archives.missing("svhn", path, remote.url, download, reason or "")
        splits[split] = ImageTensors(*archives.read_svhn_mat(path))
    train, val = holdout(splits["train"], val_size)
    return Dataset("svhn", 10, PAPER_IMAGE_SIZE, SVHN_MEAN, SVHN_STD, train, splits["test"], val, {"path": str(root)})


# --- ImageNet -----------------------------------------------------------------------------------


def load_imagenet(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    from torchvision import datasets, transforms  # 1.5 s to import: only when ImageNet is read

    root = Path(data_dir) / "imagenet"
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise BlockswapError(
            f"imagenet not found: expected ImageFolder trees {root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG"
        )
    size = image_size or IMAGENET_SIZE
    normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = datasets.ImageFolder(
        str(root / "train"),
        transforms.Compose(
            [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise]
        ),
    )
    test = datasets.ImageFolder(
        str(root / "val"),
        transforms.Compose(
            [
                transforms.Resize(size * IMAGENET_RESIZE // IMAGENET_SIZE),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                normalise,
            ]
        ),
    )
    return Dataset(
        "imagenet", len(train.classes), size, IMAGENET_MEAN, IMAGENET_STD, train, test, None, {"path": str(root)}
    )


# --- the user's own images (folder.py) ---------------------------------------------------------


# --- the user's own images (folder.py) ---------------------------------------------------------


def read_tree(folder: Path, size: int, classes: list[str] | None = None) -> tuple[list[str], ImageTensors]:
    """Every image under `folder`/<class>/, labelled by its class's index among `classes` (default:
    the tree's own class folders, sorted)."""
    dirs = class_folders(folder)
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        extra, absent = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
        raise BlockswapError(
            f"{folder} must have the same class folders as the training tree"
            + (f"; not in training: {', '.join(extra)}" if extra else "")
            + (f"; missing: {', '.join(absent)}" if absent else "")
        )
    files = [(label, path) for label, d in enumerate(dirs) for path in image_files(d)]
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, (_, path) in enumerate(files):
        images[i] = read_image(path, size)
    labels = torch.tensor([label for label, _ in files], dtype=torch.long)
    return names, ImageTensors(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)


def load_folder(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    # nothing to download: the files are the user's
    root = Path(data_dir)
    size = image_size or FOLDER_DEFAULT_SIZE
    if split_trees(root):
        classes, train = read_tree(root / "train", size)
        _, test = read_tree(root / "test", size, classes)
        layout = "train/ and test/ trees"
    else:
        classes, everything = read_tree(root, size)
        if len(everything) < 2:
            raise BlockswapError(f"folder dataset {root} has {len(everything)} image; a test split needs at least 2")
        train, test = holdout(everything, max(1, round(FOLDER_TEST_FRACTION * len(everything))), SPLIT_SEED)
        layout = f"one tree, {FOLDER_TEST_FRACTION:.0%} held out for testing"
    train, val = holdout(train, val_size or round(FOLDER_VAL_FRACTION * len(train)), SPLIT_SEED)
    mean, std = channel_stats(train.images)  # the training images only: validation and test stay unseen
    source = {"path": str(root), "layout": layout, "classes": classes, "normalisation": "training split"}
    return Dataset("folder", len(classes), size, mean, std, train, test, val, source)


# Dataset name (datasets.DATASETS) -> its loader.
LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "cifar10": _make_cifar_loader("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": _make_cifar_loader("cifar100", 100, CIFAR100_MEAN, CIFAR100_STD),
    "svhn": load_svhn,
    "imagenet": load_imagenet,
    "folder": load_folder,
}


def load_dataset(name: str, data_dir: str | Path = "data", image_size=None, val_size=0, download=False) -> Dataset:
    """Load a dataset by name. Missing files are one clear error saying where they belong."""
    info = dataset_info(name)
    if image_size is not None:
        info.size_for(image_size, "image size")
    return LOADERS[name](data_dir=data_dir, image_size=image_size, val_size=val_size, download=download)
