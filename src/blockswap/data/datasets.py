"""The dataset registry and its loaders: scikit-learn's digits (offline stand-in for CIFAR-10),
CIFAR-10/100, SVHN, ImageNet, and `folder`, the user's own ImageFolder-style tree (folder.py).

Small datasets are held whole as uint8 tensors (N, 3, H, W) and batched on the device (loader.py);
ImageNet is an ImageFolder read by workers. On-disk formats are in archives.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BlockswapError
from . import archives
from .archives import CIFAR_ARCHIVES, SVHN_FILES
from .augmentation import PAPER_IMAGE_SIZE
from .folder import FOLDER_DEFAULT_SIZE, class_names, load_folder
from .splits import (
    SPLIT_SEED,
    Dataset,
    ImageTensors,
    channel_stats,
    holdout,
    resize_uint8,
)

# Normalisation constants, each with its source.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # docs/paper.md s.4 (attention-transfer / Cutout code)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # per-channel statistics of the CIFAR-100 training set
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)  # per-channel statistics of the SVHN training set
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)

DIGITS_FRACTIONS = (0.6, 0.2, 0.2)  # train / validation / test, stratified by class
DIGITS_DEFAULT_SIZE = 16  # 8x8 scans upsampled; small enough for CPU, large enough for 2 strides
# The largest image side any command takes (the configuration schema's image_size maximum): far above
# ImageNet's 224, and small enough that the cost tables (int64 MACs) cannot overflow.
MAX_IMAGE_SIZE = 1024


def check_image_size(size, what: str = "image size") -> int:
    """`size` if it is an image side this package can use; else one error saying what is allowed."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise BlockswapError(f"{what} must be a positive number of pixels, at most {MAX_IMAGE_SIZE}, got {size!r}")
    return size


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without reading it (enough for costing)."""

    name: str
    known_classes: int | None  # None: read from the files (a folder dataset's class folders); see `classes`
    image_size: int  # the side used when no image size is given
    load: Callable[..., Dataset]
    where: str  # where the files must be, for the missing-data message
    resizable: bool = True  # False: stored at one size, which is the only one it can give
    train_images: int | None = None  # the training split with nothing held out; None: the user's files decide

    def size_for(self, image_size: int | None, what: str = "--image-size") -> int:
        """The side this dataset's images will have for a requested `image_size` (None: its own);
        one error where it cannot honour the request instead of silently using another size."""
        if image_size is None:
            return self.image_size
        check_image_size(image_size, what)
        if not self.resizable and image_size != self.image_size:
            raise BlockswapError(
                f"{self.name} images are {self.image_size}x{self.image_size} and are not resized: "
                f"{what} {image_size} cannot be used with it (leave it out)"
            )
        return image_size

    @property
    def num_classes(self) -> int:
        """The number of classes, for datasets that fix it; one error for those whose files decide it."""
        if self.known_classes is None:
            raise BlockswapError(
                f"dataset {self.name!r} takes its classes from the class folders under its data "
                "folder, which this step is not given"
            )
        return self.known_classes

    def network_input(
        self, image_size: int | None = None, data_dir: str | Path = "data"
    ) -> tuple[tuple[int, int], int]:
        """Input size and class count of a network built for this dataset. Costing reads no image,
        so any size is allowed here; loading is where `size_for` refuses one a dataset cannot give."""
        size = self.image_size if image_size is None else check_image_size(image_size, "--image-size")
        return (size, size), self.classes(data_dir)

    def classes(self, data_dir: str | Path = "data") -> int:
        """The number of classes; a folder dataset's is its number of class folders (no image is read)."""
        return self.known_classes if self.known_classes is not None else len(class_names(Path(data_dir)))


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
        DATASETS[name].size_for(image_size)
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
    DATASETS["svhn"].size_for(image_size)
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

IMAGENET_SIZE = 224
IMAGENET_RESIZE = 256  # evaluation: resize the short side to 256, centre-crop 224


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


def _load_folder(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    return load_folder(data_dir, image_size, val_size)  # nothing to download: the files are the user's


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("digits", 10, DIGITS_DEFAULT_SIZE, load_digits, "bundled with scikit-learn", train_images=1077),
        DatasetInfo(
            "cifar10",
            10,
            32,
            _make_cifar_loader("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD),
            "DATA/cifar-10-batches-py",
            resizable=False,
            train_images=50_000,
        ),
        DatasetInfo(
            "cifar100",
            100,
            32,
            _make_cifar_loader("cifar100", 100, CIFAR100_MEAN, CIFAR100_STD),
            "DATA/cifar-100-python",
            resizable=False,
            train_images=50_000,
        ),
        DatasetInfo(
            "svhn", 10, 32, load_svhn, "DATA/svhn/{train,test}_32x32.mat", resizable=False, train_images=73_257
        ),
        DatasetInfo(
            "imagenet", 1000, IMAGENET_SIZE, load_imagenet, "DATA/imagenet/{train,val}/<class>/", train_images=1_281_167
        ),
        DatasetInfo(
            "folder",
            None,
            FOLDER_DEFAULT_SIZE,
            _load_folder,
            "DATA/<class>/<images> or DATA/{train,test}/<class>/<images>",
        ),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: not a name at all (a damaged model record's list)
        raise BlockswapError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}") from None


def load_dataset(name: str, data_dir: str | Path = "data", image_size=None, val_size=0, download=False) -> Dataset:
    """Load a dataset by name. Missing files are one clear error saying where they belong."""
    info = dataset_info(name)
    if image_size is not None:
        info.size_for(image_size, "image size")
    return info.load(data_dir=data_dir, image_size=image_size, val_size=val_size, download=download)
