"""The original on-disk formats, read directly: CIFAR's pickled batches and SVHN's .mat files.

Reading the originals (not a converted copy) lets tests write small archives in the same formats.
Each archive is described by a frozen record naming where it comes from and what it holds.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BlockswapError


@dataclass(frozen=True)
class CifarArchive:
    """One CIFAR release: the tarball, its checksum, the folder it extracts to and its batch files."""

    url: str
    md5: str
    folder: str  # extracted into DATA/<folder>
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes  # CIFAR-100 has coarse and fine labels; the fine ones are the 100 classes


@dataclass(frozen=True)
class RemoteFile:
    """A single file to save as is (SVHN's .mat splits)."""

    url: str
    md5: str

    @property
    def name(self) -> str:
        return Path(self.url).name


CIFAR_ARCHIVES = {
    "cifar10": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key=b"labels",
    ),
    "cifar100": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key=b"fine_labels",
    ),
}
SVHN_FILES = {
    "train": RemoteFile("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": RemoteFile("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b6c0f40bee"),
}


def missing(name: str, where: Path, url: str, download: bool, reason: str = "") -> BlockswapError:
    """The error for absent files: where they belong, where to get them, and why a download failed."""
    tried = f" (download failed: {reason})" if download else " (or pass --download to fetch it)"
    verb = "extract it into" if url.endswith(".tar.gz") else "save it in"
    return BlockswapError(f"{name} not found: expected {where}; download {url} and {verb} {where.parent}{tried}")


def fetch(url: str, root: Path, md5: str, extract: bool) -> str | None:
    """Download (and extract) with torchvision's helper; returns an error string when offline."""
    from torchvision.datasets.utils import download_and_extract_archive, download_url  # 1.5 s: only to download

    try:
        if extract:
            download_and_extract_archive(url, str(root), md5=md5)
        else:
            download_url(url, str(root), md5=md5)
    except Exception as err:  # network errors come in many types; the message is what matters
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


# Everything a CIFAR batch pickle names: numpy's array reconstruction (protocols 2 to 4) or
# _frombuffer (protocol 5), under numpy 1's and 2's module names, and codecs.encode, which
# protocol-2 pickles use for bytes. A pickle calls what it names while it is read, so anything else
# (os.system, builtins.eval, ...) is refused before it is looked up.
ARCHIVE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}
# numpy's own functions behind the private names, whichever module this numpy keeps them in.
NUMPY_REBUILDERS = {
    "_reconstruct": np.ndarray.__reduce_ex__(np.zeros(1), 2)[0],
    "_frombuffer": np.ndarray.__reduce_ex__(np.zeros(1), 5)[0],
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names something a CIFAR batch never holds."""


class ArchiveUnpickler(pickle.Unpickler):
    """Reads CIFAR's pickled batches: dicts of bytes, lists and numpy arrays, and nothing that runs."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ARCHIVE_GLOBALS:
            raise ForbiddenGlobal(f"it names {module}.{name}, which a CIFAR batch never holds")
        return NUMPY_REBUILDERS.get(name) or super().find_class(module, name)


def read_cifar_batches(folder: Path, names: tuple[str, ...], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels of the named batch files, in order."""
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise BlockswapError(f"CIFAR batch file {path} is missing")
        try:
            # CIFAR's own format is a Python pickle of numpy arrays; only these files are read so,
            # and only through ArchiveUnpickler.
            with open(path, "rb") as fh:
                batch = ArchiveUnpickler(fh, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        except ForbiddenGlobal as err:
            raise BlockswapError(
                f"CIFAR batch file {path} is refused ({err}); replace it with the original file"
            ) from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise BlockswapError(f"CIFAR batch file {path} is corrupt: {type(err).__name__}") from None
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels 0..9 of one SVHN split."""
    from scipy.io import loadmat  # scipy is slow to import: only for SVHN's .mat files

    try:
        mat = loadmat(str(path))
        images = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))).to(torch.uint8)
        labels = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1) % 10)  # SVHN stores digit 0 as 10
    except (ValueError, KeyError, OSError) as err:
        raise BlockswapError(f"SVHN file {path} is corrupt: {type(err).__name__}") from None
    return images, labels
