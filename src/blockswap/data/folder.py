"""`folder`: the user's own images as a dataset, from an ImageFolder-style tree.

    DATA/<class>/<image>                 one tree: a seeded test split is held out of it
    DATA/train/<class>/<image>           or two: train/ and test/, with the same class folders
    DATA/test/<class>/<image>

DATA is `--data-dir` (`data_dir` in a config) itself. Classes are the sub-folders, in sorted name
order (label 0 is the first); every image of any size is centre-cropped to a square and resized to
`--image-size` (default 32, the paper's CIFAR size), and the whole dataset is held in memory like
CIFAR. A validation split (`val_size` images, or 10 % of the training images when none is given)
is held out of the training images with the fixed split seed, and the normalisation is the
per-channel mean and standard deviation of the remaining training images.

This module reads the tree's layout and its images (loaders.py holds them as tensors), so that
costing a network for a folder dataset counts its classes without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import BlockswapError

FOLDER_DEFAULT_SIZE = 32
FOLDER_TEST_FRACTION = 0.2  # one tree: the share of its images held out for testing
FOLDER_VAL_FRACTION = 0.1  # the share of training images held out for validation when val_size is not given
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folders(folder: Path) -> list[Path]:
    """The class folders of one tree; one error when the tree is missing or has none."""
    if not folder.is_dir():
        raise BlockswapError(f"folder dataset not found: {folder} is not a folder (expected {folder}/<class>/<images>)")
    classes = _visible_dirs(folder)
    if not classes:
        raise BlockswapError(f"folder dataset {folder} has no class folders (expected {folder}/<class>/<images>)")
    return classes


def split_trees(root: Path) -> bool:
    """True for the train/ + test/ layout, False for one tree; one error for half of the former."""
    present = [(root / name).is_dir() for name in ("train", "test")]
    if any(present) and not all(present):
        have, lack = ("train", "test") if present[0] else ("test", "train")
        raise BlockswapError(
            f"folder dataset {root} has {have}/ but no {lack}/: give both, "
            "or only class folders (a test split is then held out)"
        )
    return all(present)


def class_names(root: Path) -> list[str]:
    """The classes of a folder dataset, from its folder names alone (enough for costing)."""
    return [d.name for d in class_folders(root / "train" if split_trees(root) else root)]


def image_files(class_dir: Path) -> list[Path]:
    files = sorted(
        p
        for p in class_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise BlockswapError(
            f"class {class_dir.name!r} has no images: {class_dir} holds no {', '.join(IMAGE_SUFFIXES)} files"
        )
    return files


def read_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: RGB, centre-cropped to a square, resized (PIL's filters antialias)."""
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)  # camera photos store their rotation in EXIF
            square = ImageOps.fit(upright.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BlockswapError(f"cannot read image {path}: {reason}") from None
    return np.asarray(square, dtype=np.uint8)
