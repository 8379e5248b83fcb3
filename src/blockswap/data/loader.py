"""Batches: seeded, sharded, augmented passes over a `Dataset`'s splits, on the device.

In-memory splits (`ImageTensors`) are sliced, normalised and augmented in whole batches on the device
(`TensorBatches`), so a CPU epoch is not dominated by per-image Python work; ImageFolder splits are
read by DataLoader workers (`FolderBatches`), each image transformed with the torch RNG seeded by
(epoch seed, its index) alone (`SeededImages`). Either way, with `shard=(rank, world)` every global
batch is drawn whole and each rank keeps its `part_of` it, augmented as in one process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import torch

from ..errors import BlockswapError
from ..seeds import derive_seed
from .augmentation import Augmentation, cutout_holes
from .splits import Dataset, ImageTensors

# derive_seed(epoch seed, stream, ...) of a folder epoch: the workers' base seed, the Cutout holes,
# and each image's transforms (with its index).
WORKER_STREAM, CUTOUT_STREAM, IMAGE_STREAM = 0, 1, 2


def part_of(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s share of a global batch of `n` examples: contiguous, sizes differing by at most
    one, so the shares of every rank put together are the global batch in order."""
    return slice(n * rank // world, n * (rank + 1) // world)


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
        device: str | torch.device = "cpu",
        augmentation: Augmentation | None = None,
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
            batch = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield batch[part_of(len(batch), *self.shard)]


class SeededImages(torch.utils.data.Dataset):
    """`dataset` whose item `index` is read with the CPU's global torch RNG (which torchvision's
    random transforms draw from) seeded by (`seed`, `index`) alone, and restored afterwards: an
    image's crop and flip in an epoch are the same whichever rank, worker or order reads it."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also reseed the GPUs' generators.
            torch.default_generator.manual_seed(derive_seed(self.seed, IMAGE_STREAM, index))
            return self.dataset[index]


def _collate(batch: list, image_shape: tuple[int, ...]):
    # A rank's share of a final partial batch can be empty; it still takes part in the step.
    if not batch:
        return torch.empty((0, *image_shape)), torch.empty(0, dtype=torch.long)
    return torch.utils.data.default_collate(batch)


class FolderBatches:
    """One seeded epoch of an ImageFolder split: torchvision transforms in worker processes, seeded
    per image by (`seed`, its index), then Cutout (after normalisation, as for in-memory data) on the
    device, drawn for the whole global batch from a generator seeded by the epoch; so every rank
    crops, flips and cuts its share of a batch as one process would, with any number of workers."""

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        seed: int,
        device,
        cutout: int,
        workers: int,
        drop_last: bool,
        shard: tuple[int, int],
    ):
        self.sampler = ShardedBatchSampler(len(data.train), batch_size, seed, drop_last, shard)
        self.loader = torch.utils.data.DataLoader(
            SeededImages(data.train, seed),
            batch_sampler=self.sampler,
            num_workers=workers,
            # The workers' base seed, drawn here rather than from the global RNG; the transforms are
            # seeded per image and the order comes from the sampler.
            generator=torch.Generator().manual_seed(derive_seed(seed, WORKER_STREAM)),
            collate_fn=functools.partial(_collate, image_shape=(3, data.image_size, data.image_size)),
        )
        self.device, self.cutout, self.seed, self.shard = torch.device(device), cutout, seed, shard

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, CUTOUT_STREAM))
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
        return TensorBatches(
            data.train,
            data.mean,
            data.std,
            batch_size,
            device,
            augmentation,
            shuffle=True,
            seed=seed,
            drop_last=drop_last,
            shard=shard,
        )
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
