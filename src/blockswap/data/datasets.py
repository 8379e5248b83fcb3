"""Datasets: scikit-learn's digits (offline stand-in for CIFAR-10), CIFAR-10/100, SVHN, ImageNet.

Small datasets are held whole as uint8 tensors (N, 3, H, W) and augmented in batches on the
device (docs/paper.md s.4: random crop with padding, horizontal flip, Cutout after normalisation), so a
CPU epoch is not dominated by per-image Python work. ImageNet is an ImageFolder read by workers.

On-disk formats are the originals (CIFAR's pickled batches, SVHN's .mat files), read directly so
that tests can write small archives in the same format.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BlockswapError
from ..seeds import derive_seed

# Normalisation constants, each with its source.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # docs/paper.md s.4 (attention-transfer / Cutout code)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # per-channel statistics of the CIFAR-100 training set
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)  # per-channel statistics of the SVHN training set
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper's augmentation at 32 px: pad 4 and a 16 px Cutout hole; other sizes scale with it.
PAPER_IMAGE_SIZE = 32
PAPER_CROP_PADDING = 4
PAPER_CUTOUT = 16

DIGITS_SPLIT_SEED = 0  # fixed: the digits split never changes with the experiment seed
DIGITS_FRACTIONS = (0.6, 0.2, 0.2)  # train / validation / test, stratified by class
DIGITS_DEFAULT_SIZE = 16  # 8x8 scans upsampled; small enough for CPU, large enough for 2 strides
# The largest image side any command takes (config/schema.yaml's image_size maximum): far above
# ImageNet's 224, and small enough that the cost tables (int64 MACs) cannot overflow.
MAX_IMAGE_SIZE = 1024


def check_image_size(size, what: str = "image size") -> int:
    """`size` if it is an image side this package can use; else one error saying what is allowed."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise BlockswapError(f"{what} must be a positive number of pixels, at most {MAX_IMAGE_SIZE}, got {size!r}")
    return size


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
    val: Optional[object] = None
    source: dict = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.image_size, self.image_size)


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without reading it (enough for costing)."""

    name: str
    num_classes: int
    image_size: int
    load: Callable[..., Dataset]
    where: str  # where the files must be, for the missing-data message


# --- digits -------------------------------------------------------------------------------------


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) floats in [0, 1] -> (N, 3, size, size) uint8."""
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def load_digits(data_dir=None, image_size=None, val_size=None, download=False) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    size = image_size or DIGITS_DEFAULT_SIZE
    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)  # pixel values are 0..16
    labels = torch.from_numpy(bunch.target).long()
    index = np.arange(len(labels))
    train_frac, val_frac, test_frac = DIGITS_FRACTIONS
    rest, test_idx = train_test_split(
        index, test_size=test_frac, stratify=labels.numpy(), random_state=DIGITS_SPLIT_SEED
    )
    train_idx, val_idx = train_test_split(
        rest,
        test_size=val_frac / (train_frac + val_frac),
        stratify=labels.numpy()[rest],
        random_state=DIGITS_SPLIT_SEED,
    )
    pixels = _resize_uint8(images, size)

    def split(idx):
        idx = torch.from_numpy(np.sort(idx))
        return ImageTensors(pixels[idx], labels[idx])

    train = split(train_idx)
    # No published constants exist for upsampled digits: use the training split's own statistics.
    mean, std = channel_stats(train.images)
    return Dataset("digits", 10, size, mean, std, train, split(test_idx), split(val_idx), {"source": "sklearn"})


# --- CIFAR and SVHN -----------------------------------------------------------------------------

CIFAR_ARCHIVES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ["train"],
        ["test"],
        b"fine_labels",
    ),
}
SVHN_FILES = {
    "train": ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b6c0f40bee"),
}


def _missing(name: str, where: Path, url: str, download: bool, reason: str = "") -> BlockswapError:
    tried = f" (download failed: {reason})" if download else " (or pass --download to fetch it)"
    verb = "extract it into" if url.endswith(".tar.gz") else "save it in"
    return BlockswapError(f"{name} not found: expected {where}; download {url} and {verb} {where.parent}{tried}")


def _fetch(url: str, root: Path, md5: str, extract: bool) -> Optional[str]:
    """Download (and extract) with torchvision's helper; returns an error string when offline."""
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    try:
        if extract:
            download_and_extract_archive(url, str(root), md5=md5)
        else:
            download_url(url, str(root), md5=md5)
    except Exception as err:  # network errors come in many types; the message is what matters
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def _read_cifar_batches(folder: Path, names: list[str], label_key: bytes) -> ImageTensors:
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise BlockswapError(f"CIFAR batch file {path} is missing")
        try:
            # CIFAR's own format is a Python pickle of numpy arrays; only these files are read so.
            with open(path, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            raise BlockswapError(f"CIFAR batch file {path} is corrupt: {type(err).__name__}") from None
    return ImageTensors(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long))


def _holdout(train: ImageTensors, val_size: int, seed: int = DIGITS_SPLIT_SEED):
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


def _make_cifar_loader(name: str, classes: int, mean, std):
    url, md5, folder_name, train_files, test_files, label_key = CIFAR_ARCHIVES[name]

    def load(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
        root = Path(data_dir)
        folder = root / folder_name
        if not folder.is_dir():
            reason = _fetch(url, root, md5, extract=True) if download else None
            if not folder.is_dir():
                raise _missing(name, folder, url, download, reason or "")
        train = _read_cifar_batches(folder, train_files, label_key)
        test = _read_cifar_batches(folder, test_files, label_key)
        train, val = _holdout(train, val_size)
        return Dataset(name, classes, PAPER_IMAGE_SIZE, mean, std, train, test, val, {"path": str(folder)})

    return load


def load_svhn(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    from scipy.io import loadmat

    root = Path(data_dir) / "svhn"
    splits = {}
    for split, (url, md5) in SVHN_FILES.items():
        path = root / Path(url).name
        if not path.is_file():
            reason = _fetch(url, root, md5, extract=False) if download else None
            if not path.is_file():
                raise _missing("svhn", path, url, download, reason or "")
        try:
            mat = loadmat(str(path))
            images = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))).to(torch.uint8)
            labels = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1) % 10)  # SVHN stores digit 0 as 10
        except (ValueError, KeyError, OSError) as err:
            raise BlockswapError(f"SVHN file {path} is corrupt: {type(err).__name__}") from None
        splits[split] = ImageTensors(images, labels)
    train, val = _holdout(splits["train"], val_size)
    return Dataset("svhn", 10, PAPER_IMAGE_SIZE, SVHN_MEAN, SVHN_STD, train, splits["test"], val, {"path": str(root)})


# --- ImageNet -----------------------------------------------------------------------------------

IMAGENET_SIZE = 224
IMAGENET_RESIZE = 256  # evaluation: resize the short side to 256, centre-crop 224


def load_imagenet(data_dir="data", image_size=None, val_size=0, download=False) -> Dataset:
    from torchvision import datasets, transforms

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
    return Dataset("imagenet", len(train.classes), size, IMAGENET_MEAN, IMAGENET_STD, train, test, None, {"path": str(root)})


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("digits", 10, DIGITS_DEFAULT_SIZE, load_digits, "bundled with scikit-learn"),
        DatasetInfo(
            "cifar10", 10, 32, _make_cifar_loader("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD), "DATA/cifar-10-batches-py"
        ),
        DatasetInfo(
            "cifar100",
            100,
            32,
            _make_cifar_loader("cifar100", 100, CIFAR100_MEAN, CIFAR100_STD),
            "DATA/cifar-100-python",
        ),
        DatasetInfo("svhn", 10, 32, load_svhn, "DATA/svhn/{train,test}_32x32.mat"),
        DatasetInfo("imagenet", 1000, IMAGENET_SIZE, load_imagenet, "DATA/imagenet/{train,val}/<class>/"),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: not a name at all (a damaged model record's list)
        raise BlockswapError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}") from None


def load_dataset(name: str, data_dir: Union[str, Path] = "data", image_size=None, val_size=0, download=False) -> Dataset:
    """Load a dataset by name. Missing files are one clear error saying where they belong."""
    if image_size is not None:
        check_image_size(image_size)
    return dataset_info(name).load(data_dir=data_dir, image_size=image_size, val_size=val_size, download=download)


# --- batched augmentation on the device ---------------------------------------------------------


def part_of(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s share of a global batch of `n` examples: contiguous, sizes differing by at most
    one, so the shares of every rank put together are the global batch in order."""
    return slice(n * rank // world, n * (rank + 1) // world)


def cutout_holes(n: int, h: int, w: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """(n, h, w) boolean masks of one `size` x `size` square each, centred anywhere in the image
    and clipped at the border (the Cutout code's rule: the centre is drawn over the whole image)."""
    cy = torch.randint(0, h, (n, 1), generator=generator).to(device)
    cx = torch.randint(0, w, (n, 1), generator=generator).to(device)
    half = size // 2
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    in_rows = (ys >= cy - half) & (ys < cy - half + size)
    in_cols = (xs >= cx - half) & (xs < cx - half + size)
    return in_rows[:, :, None] & in_cols[:, None, :]


@dataclass(frozen=True)
class Augmentation:
    """docs/paper.md s.4 at any image size: crop with black padding, horizontal flip, Cutout (one square
    hole, applied after normalisation, centre anywhere, clipped at the border).

    The released pipeline pads the raw image (black = pixel value 0) and normalises afterwards,
    so the border of a shifted crop is normalised black, not the mean colour; Cutout's hole is 0
    after normalisation. Given `normalise`, the crop and flip work on raw pixels, then the batch is
    normalised, then Cutout is applied, in that order.
    """

    crop_padding: int
    cutout: int
    flip: bool = True

    @classmethod
    def paper(cls, image_size: int, cutout: bool = True) -> "Augmentation":
        scale = image_size / PAPER_IMAGE_SIZE
        return cls(round(PAPER_CROP_PADDING * scale), round(PAPER_CUTOUT * scale) if cutout else 0)

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        normalise: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device

        def draw(high, size):
            return torch.randint(0, high, size, generator=generator).to(dev)

        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))  # zeros: black when x is still in pixel values
            rows = draw(2 * p + 1, (n,))[:, None] + torch.arange(h, device=dev)
            cols = draw(2 * p + 1, (n,))[:, None] + torch.arange(w, device=dev)
            batch = torch.arange(n, device=dev)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            flip = draw(2, (n,)).bool()
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if normalise is not None:
            x = normalise(x)
        if self.cutout:
            x = x.masked_fill(cutout_holes(n, h, w, self.cutout, generator, dev)[:, None], 0.0)
        return x.contiguous()


class TensorBatches:
    """Seeded minibatches of an in-memory split, normalised (and augmented) on `device`.

    With `shard=(rank, world)` each global batch is drawn and augmented whole, exactly as in one
    process, and this rank keeps its `part_of` it: data-parallel ranks together see the very
    images one process would, whatever the number of processes.
    """

    def __init__(
        self,
        data: ImageTensors,
        mean,
        std,
        batch_size: int,
        device: Union[str, torch.device] = "cpu",
        augmentation: Optional[Augmentation] = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        if batch_size < 1:
            raise BlockswapError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.batch_size, self.augmentation = batch_size, augmentation
        self.shuffle, self.drop_last, self.shard = shuffle, drop_last, shard
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state(self) -> torch.Tensor:
        """Generator state, for exact resumption."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixel values (0..255, float) -> normalised; pixel 0 (black) -> -mean/std."""
        return (x - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for i in range(len(self)):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            take = order[idx] if order is not None else idx
            x = self.images[take].float()
            if self.augmentation is not None:
                x = self.augmentation(x, self.generator, self.normalise)
            else:
                x = self.normalise(x)
            mine = part_of(len(x), *self.shard)
            yield x[mine], self.labels[take][mine]


def on_device(loader, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)


class ShardedBatchSampler:
    """Index lists of one shuffled epoch (a DataLoader `batch_sampler`): the global batches are
    fixed by `seed`, and rank `rank` of `world` gets its `part_of` each (possibly empty)."""

    def __init__(self, n: int, batch_size: int, seed: int, drop_last: bool, shard: tuple[int, int] = (0, 1)):
        self.n, self.batch_size, self.seed, self.drop_last, self.shard = n, batch_size, seed, drop_last, shard

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        for i in range(len(self)):
            batch = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield batch[part_of(len(batch), *self.shard)]


def _collate(batch: list, image_shape: tuple[int, ...]):
    # A rank's share of a final partial batch can be empty; it still takes part in the step.
    if not batch:
        return torch.empty((0, *image_shape)), torch.empty(0, dtype=torch.long)
    return torch.utils.data.default_collate(batch)


class FolderBatches:
    """One seeded epoch of an ImageFolder split: torchvision transforms in worker processes, then
    Cutout (after normalisation, as for in-memory data) on the device, drawn for the whole global
    batch from a generator seeded by the epoch so that every rank cuts the same holes as one
    process would."""

    def __init__(self, data: "Dataset", batch_size: int, seed: int, device, cutout: int, workers: int,
                 drop_last: bool, shard: tuple[int, int]):
        self.sampler = ShardedBatchSampler(len(data.train), batch_size, seed, drop_last, shard)
        self.loader = torch.utils.data.DataLoader(
            data.train,
            batch_sampler=self.sampler,
            num_workers=workers,
            # Seeds the workers' random transforms; the order comes from the sampler.
            generator=torch.Generator().manual_seed(derive_seed(seed, 0)),
            collate_fn=functools.partial(_collate, image_shape=(3, data.image_size, data.image_size)),
        )
        self.device, self.cutout, self.seed, self.shard = torch.device(device), cutout, seed, shard

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, 1))
        n_total = self.sampler.n
        for i, (x, y) in enumerate(on_device(self.loader, self.device)):
            if self.cutout:
                n = min(self.sampler.batch_size, n_total - i * self.sampler.batch_size)  # global batch
                _, _, h, w = x.shape
                holes = cutout_holes(n, h, w, self.cutout, generator, self.device)[part_of(n, *self.shard)]
                x = x.masked_fill(holes[:, None], 0.0)
            yield x, y


def epoch_batches(
    data: Dataset,
    batch_size: int,
    seed: int,
    device="cpu",
    cutout: bool = True,
    workers: int = 4,
    drop_last: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled, augmented pass over the training split, fixed by `seed` (this rank's share of
    every global batch when `shard` = (rank, world) names several processes).

    `drop_last` drops the final partial batch; a split smaller than one batch is always one
    (partial) batch, so an epoch is never empty.
    """
    drop_last = drop_last and len(data.train) >= batch_size
    augmentation = Augmentation.paper(data.image_size, cutout)
    if isinstance(data.train, ImageTensors):
        return TensorBatches(data.train, data.mean, data.std, batch_size, device, augmentation, shuffle=True,
                             seed=seed, drop_last=drop_last, shard=shard)
    return FolderBatches(data, batch_size, seed, device, augmentation.cutout, workers, drop_last, shard)


def evaluation_batches(data: Dataset, split: str, batch_size: int, device="cpu", workers: int = 4):
    """A plain (unaugmented) pass over `split` ('val' or 'test')."""
    part = getattr(data, split)
    if part is None:
        raise BlockswapError(f"{data.name} has no {split} split")
    if isinstance(part, ImageTensors):
        return TensorBatches(part, data.mean, data.std, batch_size, device)
    return on_device(torch.utils.data.DataLoader(part, batch_size=batch_size, num_workers=workers), device)


def training_batches(
    data: Dataset, batch_size: int, seed: int, device="cpu", cutout: bool = True, workers: int = 4
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless, seeded stream of augmented training minibatches on `device` (epoch after epoch).

    Only full minibatches (unless the split is smaller than one): a proxy measured on minibatch k
    (Fisher potential, Table 1's ablation) always sees the batch size it was configured with.
    """
    epoch = 0
    while True:
        yield from epoch_batches(data, batch_size, derive_seed(seed, epoch), device, cutout, workers, drop_last=True)
        epoch += 1
