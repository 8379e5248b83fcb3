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
