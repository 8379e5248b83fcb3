"""Datasets: digits for real, CIFAR-10 and SVHN from files in their on-disk formats, image folders,
augmentation and batching."""

import dataclasses
import functools
import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datafiles import write_cifar10, write_cifar10_archive, write_imagenet, write_svhn

from blockswap import BlockswapError
from blockswap.cli import main
from blockswap.data import archives, loader, splits
from blockswap.data import datasets as ds
from blockswap.data.augmentation import Augmentation
from blockswap.data.loaders import LOADERS, load_dataset
from blockswap.planning.config_file import SCHEMA


@pytest.mark.slow
def test_digits_split_is_fixed_stratified_and_complete():
    d = load_dataset("digits", image_size=12)
    assert (len(d.train), len(d.val), len(d.test)) == (1077, 360, 360)
    assert d.train.images.shape == (1077, 3, 12, 12) and d.train.images.dtype == torch.uint8
    for split in (d.train, d.val, d.test):
        counts = torch.bincount(split.labels, minlength=10).float()
        fractions = counts / counts.sum()
        assert fractions.min() > 0.08 and fractions.max() < 0.12  # each class ~10 % everywhere
    again = load_dataset("digits", image_size=12)
    assert torch.equal(again.test.images, d.test.images) and torch.equal(again.test.labels, d.test.labels)
    # Splits are disjoint images of the 1797 scans.
    all_rows = torch.cat([d.train.images, d.val.images, d.test.images]).flatten(1)
    assert len(all_rows) == 1797
    assert torch.allclose(torch.tensor(d.mean), (d.train.images.float() / 255).mean(dim=(0, 2, 3)))


def test_digits_are_three_channel_grey():
    d = load_dataset("digits")
    assert d.image_size == ds.DIGITS_DEFAULT_SIZE
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 2])


def test_cifar10_reads_torchvisions_on_disk_format(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    d = load_dataset("cifar10", tmp_path)
    assert (len(d.train), len(d.test), d.val) == (100, 20, None)
    assert d.train.images.shape == (100, 3, 32, 32) and d.num_classes == 10
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    assert torch.equal(d.train.images[20], torch.from_numpy(batch[b"data"][0].reshape(3, 32, 32)))
    assert d.train.labels[20].item() == batch[b"labels"][0]
    assert d.mean == ds.CIFAR10_MEAN


class Payload:
    """Unpickling this writes a file: what a hostile data file would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_a_cifar_batch_that_would_run_code_is_refused_before_it_runs(tmp_path, capsys):
    folder = write_cifar10(tmp_path, per_batch=4)
    marker = tmp_path / "ran.txt"
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": Payload(marker), b"labels": [0]}, fh)
    assert main(["data", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "data_batch_3 is refused (it names pathlib" in err and "\n" not in err
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_are_read(tmp_path, protocol):
    # The originals are protocol-2 pickles from Python 2; re-saved copies may use any protocol.
    folder = write_cifar10(tmp_path, per_batch=4)
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
    images, labels = archives.read_cifar_batches(folder, ("data_batch_1",), b"labels")
    with open(folder / "data_batch_1", "rb") as fh:
        original = pickle.load(fh, encoding="bytes")
    assert torch.equal(images, torch.from_numpy(original[b"data"].reshape(-1, 3, 32, 32)))
    assert labels.tolist() == original[b"labels"]


def test_cifar10_validation_holdout_is_fixed(tmp_path):
    write_cifar10(tmp_path)
    a = load_dataset("cifar10", tmp_path, val_size=10)
    b = load_dataset("cifar10", tmp_path, val_size=10)
    assert (len(a.train), len(a.val)) == (90, 10)
    assert torch.equal(a.val.images, b.val.images)
    with pytest.raises(BlockswapError, match="val_size must be between 0 and 99"):
        load_dataset("cifar10", tmp_path, val_size=100)


@pytest.fixture
def local_mirror(tmp_path):
    """An HTTP server on loopback serving tmp_path/mirror, stopped after the test."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield mirror, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_cifar10_download_extracts_the_archive(tmp_path, monkeypatch, local_mirror):
    mirror, url = local_mirror
    archive = write_cifar10_archive(mirror)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    original = archives.CIFAR_ARCHIVES["cifar10"]
    mirrored = dataclasses.replace(original, url=f"{url}/{archive.name}", md5=md5)
    monkeypatch.setitem(archives.CIFAR_ARCHIVES, "cifar10", mirrored)
    load = LOADERS["cifar10"]
    d = load(data_dir=tmp_path / "data", download=True)
    assert len(d.train) == 100 and (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()


def test_missing_cifar_says_where_to_put_it(tmp_path):
    with pytest.raises(BlockswapError) as err:
        load_dataset("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    assert "\n" not in message


def test_offline_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    original = archives.CIFAR_ARCHIVES["cifar100"]
    offline = dataclasses.replace(original, url="http://127.0.0.1:9/cifar-100-python.tar.gz")
    monkeypatch.setitem(archives.CIFAR_ARCHIVES, "cifar100", offline)
    load = LOADERS["cifar100"]
    with pytest.raises(BlockswapError, match="cifar100 not found: .*download failed: .*refused"):
        load(data_dir=tmp_path, download=True)


def test_corrupt_cifar_batch(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(BlockswapError, match="test_batch is corrupt"):
        load_dataset("cifar10", tmp_path)


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    write_svhn(tmp_path)
    d = load_dataset("svhn", tmp_path)
    assert d.train.images.shape == (12, 3, 32, 32)
    assert d.train.labels.min() >= 0 and d.train.labels.max() <= 9


def test_imagenet_needs_imagefolder_trees(tmp_path):
    with pytest.raises(BlockswapError, match="imagenet/train/<class>"):
        load_dataset("imagenet", tmp_path)


def test_imagenet_reads_an_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "imagenet" / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "imagenet" / split / cls / "x.JPEG")
    d = load_dataset("imagenet", tmp_path, image_size=32)
    assert d.num_classes == 2 and d.test[0][0].shape == (3, 32, 32)


def test_unknown_dataset():
    with pytest.raises(BlockswapError, match="allowed: digits, cifar10, cifar100, svhn, imagenet"):
        load_dataset("mnist")


# --- augmentation -------------------------------------------------------------------------------


def test_paper_augmentation_at_32_px_is_pad_4_cutout_16():
    assert Augmentation.paper(32) == Augmentation(4, 16)
    assert Augmentation.paper(16) == Augmentation(2, 8)
    assert Augmentation.paper(32, cutout=False).cutout == 0


def test_cutout_zeroes_one_square_clipped_at_the_border():
    aug = Augmentation(crop_padding=0, cutout=4, flip=False)
    x = torch.ones(200, 1, 10, 10)
    out = aug(x, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # a full 4x4 hole, or a corner of it
    rows = (out == 0).any(dim=3).sum(dim=(1, 2))
    assert rows.max() <= 4


def test_crop_is_a_shift_with_zero_padding_and_flip_mirrors():
    x = torch.arange(36.0).view(1, 1, 6, 6).expand(64, 1, 6, 6)
    out = Augmentation(crop_padding=1, cutout=0, flip=False)(x, torch.Generator().manual_seed(1))
    for img in out[:, 0]:
        inner = img[1:-1, 1:-1]
        diffs = inner - x[0, 0, 1:-1, 1:-1]
        assert torch.all(diffs == diffs[0, 0]) and diffs[0, 0].item() in {-7, -6, -5, -1, 0, 1, 5, 6, 7}
    flipped = Augmentation(crop_padding=0, cutout=0, flip=True)(x, torch.Generator().manual_seed(2))
    kinds = {
        ("flip" if torch.equal(img, x[0].flip(2)) else "same" if torch.equal(img, x[0]) else "?") for img in flipped
    }
    assert kinds == {"flip", "same"}


def test_batches_are_normalised_seeded_and_cover_the_split():
    d = load_dataset("digits")

    def epoch(seed):
        batches = loader.TensorBatches(
            d.train, d.mean, d.std, 100, augmentation=Augmentation.paper(16), shuffle=True, seed=seed
        )
        return list(batches)

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert len(a) == 11 and sum(len(y) for _, y in a) == 1077
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(d.train.labels.tolist())
    plain = next(iter(loader.TensorBatches(d.train, d.mean, d.std, 2000)))[0]
    assert abs(plain.mean().item()) < 1e-4 and abs(plain.std().item() - 1) < 1e-2


def test_crop_pads_with_normalised_black_and_cutout_is_zero_after_normalisation():
    # White images: every pixel the crop brings in from the padding must be black *before*
    # normalisation (the released pipeline pads raw images), i.e. exactly (0 - mean) / std after.
    white = splits.ImageTensors(torch.full((64, 3, 8, 8), 255, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    crop = loader.TensorBatches(white, mean, std, 64, augmentation=Augmentation(2, 0, flip=False), seed=0)
    x = next(iter(crop))[0]
    black = crop.normalise(torch.zeros(1, 3, 1, 1))
    white_n = crop.normalise(torch.full((1, 3, 1, 1), 255.0))
    is_black = (x == black).all(dim=1)  # (n, h, w): every channel exactly normalised black
    is_white = (x == white_n).all(dim=1)
    assert torch.all(is_black | is_white)
    assert is_black.any(dim=(1, 2)).float().mean() > 0.5  # most crops are shifted
    assert not torch.equal(black, torch.zeros_like(black))  # black is not the mean colour (0 after normalising)
    # Shifted crops: black rows/columns form bands at the border only.
    for img in is_black:
        rows, cols = img.all(dim=1), img.all(dim=0)
        assert torch.equal(img, rows[:, None] | cols[None, :])
    # Cutout comes after normalisation: its hole is 0, neither black nor white.
    cut = loader.TensorBatches(white, mean, std, 64, augmentation=Augmentation(0, 4, flip=False), seed=0)
    y = next(iter(cut))[0]
    hole = (y == 0).all(dim=1)
    assert torch.all(hole | (y == white_n).all(dim=1)) and hole.sum(dim=(1, 2)).max() == 16


def test_last_partial_batch_is_kept_unless_dropped():
    d = load_dataset("digits", image_size=8)
    kept = list(loader.epoch_batches(d, 100, seed=0))
    dropped = list(loader.epoch_batches(d, 100, seed=0, drop_last=True))
    assert [len(y) for _, y in kept] == [100] * 10 + [77]
    assert [len(y) for _, y in dropped] == [100] * 10
    # A split smaller than one batch is one partial batch, never an empty epoch.
    assert [len(y) for _, y in loader.epoch_batches(d, 5000, seed=0, drop_last=True)] == [1077]


def test_ranks_share_each_global_batch_exactly():
    d = load_dataset("digits", image_size=8)
    whole = list(loader.epoch_batches(d, 100, seed=4))
    parts = [list(loader.epoch_batches(d, 100, seed=4, shard=(r, 3))) for r in range(3)]
    for i, (x, y) in enumerate(whole):
        shares = [p[i] for p in parts]
        assert [len(s[1]) for s in shares] == [len(y) // 3 + (r >= 3 - len(y) % 3) for r in range(3)]
        assert torch.equal(torch.cat([s[0] for s in shares]), x)
        assert torch.equal(torch.cat([s[1] for s in shares]), y)


@pytest.fixture
def image_folder(tmp_path):
    """An ImageFolder tree of 10 flat grey images (pixel 200) in 2 classes."""
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(5):
                Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(folder / f"{i}.png")
    return load_dataset("imagenet", tmp_path, image_size=32)


def test_imagefolder_training_honours_cutout_drop_last_and_shards(image_folder):
    def epoch(**kw):
        return list(loader.epoch_batches(image_folder, 4, seed=1, workers=0, **kw))

    plain = epoch(cutout=False)
    assert [len(y) for _, y in plain] == [4, 4, 2] and not any((x == 0).any() for x, _ in plain)
    assert [len(y) for _, y in epoch(cutout=False, drop_last=True)] == [4, 4]
    cut = epoch(cutout=True)
    size = Augmentation.paper(32).cutout  # 16 px at 32 px, as for CIFAR
    for x, _ in cut:
        hole = (x == 0).all(dim=1)  # zero in every channel: after normalisation (grey is not 0)
        assert torch.equal(hole, (x == 0).any(dim=1))
        counts = hole.sum(dim=(1, 2))
        assert counts.max() <= size * size and counts.min() > 0
        rows, cols = hole.any(dim=2).sum(dim=1), hole.any(dim=1).sum(dim=1)
        assert torch.equal(counts, rows * cols)  # one rectangle: a square clipped at the border
    again = epoch(cutout=True)
    assert all(torch.equal(a[0] == 0, b[0] == 0) for a, b in zip(cut, again))  # seeded
    shares = [epoch(cutout=True, shard=(r, 2)) for r in range(2)]
    for i, (x, y) in enumerate(cut):  # each rank cuts its part of the holes one process cuts
        assert torch.equal(torch.cat([s[i][0] == 0 for s in shares]), x == 0)
        assert torch.equal(torch.cat([s[i][1] for s in shares]), y)


def crops_by_index(data, seed: int, **kw) -> dict[int, torch.Tensor]:
    """{global image index: its augmented image} over one folder epoch (this shard's images)."""
    batches = loader.epoch_batches(data, 4, seed, cutout=False, **kw)
    return {i: x for indices, (xs, _) in zip(batches.sampler, batches) for i, x in zip(indices, xs)}


@pytest.mark.slow
def test_imagefolder_augmentation_is_fixed_by_epoch_and_image_alone(tmp_path):
    # Noise JPEGs, randomly resized and cropped, then flipped: the crops of each image in an epoch
    # are the same with or without workers and whichever shard reads it, and new the next epoch.
    write_imagenet(tmp_path, classes=2, per_class=5)
    data = load_dataset("imagenet", tmp_path, image_size=16)
    rng = torch.get_rng_state()
    one = crops_by_index(data, seed=3, workers=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left as it was
    assert sorted(one) == list(range(10))
    sharded = {i: x for r in (1, 0) for i, x in crops_by_index(data, seed=3, workers=0, shard=(r, 2)).items()}
    for other in (crops_by_index(data, seed=3, workers=2), sharded):
        assert sorted(other) == sorted(one) and all(torch.equal(other[i], x) for i, x in one.items())
    next_epoch = crops_by_index(data, seed=4, workers=0)
    assert not any(torch.equal(next_epoch[i], x) for i, x in one.items())


# --- image size: honoured or refused ------------------------------------------------------------


def test_fixed_size_datasets_refuse_another_image_size(tmp_path):
    write_cifar10(tmp_path / "c")
    write_svhn(tmp_path / "s")
    assert load_dataset("cifar10", tmp_path / "c", image_size=32).train.images.shape[-1] == 32
    for name, root in (("cifar10", tmp_path / "c"), ("svhn", tmp_path / "s")):
        with pytest.raises(BlockswapError, match=f"{name} images are 32x32 and are not resized: image size 24"):
            load_dataset(name, root, image_size=24)
    with pytest.raises(BlockswapError, match="cifar100 images are 32x32"):
        load_dataset("cifar100", tmp_path, image_size=64)  # refused before looking for files


def test_cli_refuses_an_image_size_a_dataset_cannot_give(tmp_path, capsys):
    write_cifar10(tmp_path)
    code = main(["data", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--image-size", "16"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "cifar10 images are 32x32 and are not resized: image size 16 cannot be used with it" in err


def test_resizable_datasets_honour_the_image_size(tmp_path):
    write_tree(tmp_path, {"a": 3, "b": 3})
    assert load_dataset("digits", image_size=20).train.images.shape[-2:] == (20, 20)
    assert load_dataset("folder", tmp_path, image_size=20).train.images.shape[-2:] == (20, 20)
    assert [d.name for d in ds.DATASETS.values() if not d.resizable] == ["cifar10", "cifar100", "svhn"]


# --- folder: the user's own ImageFolder tree --------------------------------------------------------


def write_tree(root: Path, counts: dict, seed: int = 0, sizes=((30, 40), (50, 20), (24, 24))) -> Path:
    """JPEGs of random flat colours (varying sizes) under root/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3))
            Image.fromarray(np.ascontiguousarray(pixels)).save(root / cls / f"{i}.jpg", quality=95)
    return root


def test_folder_classes_split_sizes_and_image_size(tmp_path):
    write_tree(tmp_path, {"cat": 10, "dog": 12, "emu": 8})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # other files are not images: skipped
    d = load_dataset("folder", tmp_path, image_size=24)
    assert d.name == "folder" and d.num_classes == 3 and d.source["classes"] == ["cat", "dog", "emu"]
    assert (len(d.test), len(d.val), len(d.train)) == (6, 2, 22)  # 20 % of 30 tested, 10 % of the rest validates
    assert d.image_size == 24 and d.train.images.shape == (22, 3, 24, 24) and d.train.images.dtype == torch.uint8
    labels = torch.cat([d.train.labels, d.val.labels, d.test.labels])
    assert torch.bincount(labels).tolist() == [10, 12, 8]  # every image in exactly one split
    assert len(load_dataset("folder", tmp_path, image_size=24, val_size=5).val) == 5
    assert load_dataset("folder", tmp_path).image_size == 32  # the documented default
    assert ds.dataset_info("folder").classes(tmp_path) == 3


def test_folder_split_is_seeded_and_reproducible(tmp_path):
    write_tree(tmp_path, {"a": 9, "b": 9, "c": 9}, sizes=((16, 16),))
    a = load_dataset("folder", tmp_path, image_size=16)
    b = load_dataset("folder", tmp_path, image_size=16)
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    more_val = load_dataset("folder", tmp_path, image_size=16, val_size=6)
    assert torch.equal(more_val.test.images, a.test.images)  # the test split does not move with val_size


def test_folder_normalisation_is_the_training_splits_statistics(tmp_path, capsys):
    write_tree(tmp_path / "tree", {"a": 8, "b": 7})
    d = load_dataset("folder", tmp_path / "tree", image_size=12)
    pixels = d.train.images.numpy().astype(np.float64) / 255
    assert np.allclose(d.mean, pixels.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(d.std, pixels.std(axis=(0, 2, 3), ddof=1), atol=1e-6)  # sample std, as for digits
    everything = torch.cat([d.train.images, d.val.images, d.test.images]).numpy() / 255
    assert not np.allclose(d.mean, everything.mean(axis=(0, 2, 3)), atol=1e-6)  # validation and test stay unseen
    # ... and `blockswap data` records it, with the classes and the layout.
    out = tmp_path / "summary.json"
    assert main(
        ["data", "--dataset", "folder", "--data-dir", str(tmp_path / "tree"), "--image-size", "12", "--out", str(out)]
    ) in (0, None)
    summary = json.loads(out.read_text())
    assert summary["mean"] == pytest.approx(list(d.mean)) and summary["std"] == pytest.approx(list(d.std))
    assert summary["classes"] == ["a", "b"] and summary["normalisation"] == "training split"
    assert summary["splits"] == {"train": len(d.train), "val": len(d.val), "test": len(d.test)}
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["image_size"] == 12


def test_folder_with_train_and_test_trees(tmp_path):
    write_tree(tmp_path / "train", {"a": 10, "b": 10})
    write_tree(tmp_path / "test", {"a": 3, "b": 2}, seed=1)
    d = load_dataset("folder", tmp_path, image_size=16, val_size=4)
    assert (len(d.train), len(d.val), len(d.test)) == (16, 4, 5)
    assert d.test.labels.tolist() == [0, 0, 0, 1, 1] and d.source["layout"] == "train/ and test/ trees"
    write_tree(tmp_path / "test", {"c": 1})
    with pytest.raises(BlockswapError, match="same class folders as the training tree; not in training: c"):
        load_dataset("folder", tmp_path)


def test_folder_trains_like_any_in_memory_dataset(tmp_path):
    write_tree(tmp_path, {"a": 6, "b": 6}, sizes=((16, 16),))
    d = load_dataset("folder", tmp_path, image_size=16)
    x, y = next(iter(loader.epoch_batches(d, 4, seed=0)))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.long


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda root: None, "folder dataset not found: .*missing is not a folder"),
        (lambda root: root.mkdir(), "has no class folders"),
        (lambda root: (root / "a").mkdir(parents=True) or write_tree(root, {"b": 2}), "class 'a' has no images"),
        (
            lambda root: write_tree(root, {"a": 2}) and (root / "a" / "1.jpg").write_bytes(b"\xff\xd8 broken"),
            "cannot read image .*1.jpg",
        ),
        (lambda root: write_tree(root / "train", {"a": 2}), "has train/ but no test/"),
        (lambda root: write_tree(root, {"a": 1}), "has 1 image; a test split needs at least 2"),
    ],
)
def test_folder_errors_are_one_line(tmp_path, make, message):
    root = tmp_path / "missing"
    make(root)
    with pytest.raises(BlockswapError, match=message) as err:
        load_dataset("folder", root)
    assert "\n" not in str(err.value)


def test_folder_classes_needed_for_costing_are_one_error_without_the_files():
    with pytest.raises(BlockswapError, match="'folder' takes its classes from the class folders"):
        _ = ds.dataset_info("folder").num_classes


def test_config_schema_accepts_every_registered_dataset():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["dataset"]["enum"] == [*ds.DATASETS, "coco"]


def test_costing_a_folder_dataset_counts_its_class_folders(tmp_path, capsys):
    write_tree(tmp_path / "tree", {"a": 2, "b": 2, "c": 2})
    out = tmp_path / "cost.json"
    assert main(
        [
            "cost",
            "--arch",
            "wrn-16-1",
            "--dataset",
            "folder",
            "--data-dir",
            str(tmp_path / "tree"),
            "--image-size",
            "16",
            "--out",
            str(out),
        ]
    ) in (0, None)
    record = json.loads(out.read_text())
    assert record["num_classes"] == 3 and record["input_size"] == [16, 16]
    capsys.readouterr()
    assert main(["cost", "--arch", "wrn-16-1", "--dataset", "folder", "--data-dir", str(tmp_path / "none")]) == 2
    assert "folder dataset not found" in capsys.readouterr().err


def test_folder_config_plans_and_evaluates_at_the_trained_size(tmp_path, monkeypatch, capsys):
    from blockswap.cli import training
    from blockswap.planning.budgets import input_size
    from blockswap.planning.config_file import load_config

    write_tree(tmp_path / "tree", {"a": 6, "b": 6}, sizes=((20, 20),))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"dataset: folder\ndata_dir: {tmp_path / 'tree'}\nimage_size: 12\n")
    root = Path(__file__).resolve().parents[1]
    assert input_size(load_config([root / "config" / "config.yaml", overlay])) == ((12, 12), 2)
    run = tmp_path / "run"
    assert main(
        [
            "train",
            "--arch",
            "wrn-10-1",
            "--dataset",
            "folder",
            "--data-dir",
            str(tmp_path / "tree"),
            "--image-size",
            "12",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(run),
        ]
    ) in (0, None)
    sizes = []

    def recording(name, data_dir, image_size, *rest):
        sizes.append(image_size)
        return load_dataset(name, data_dir, image_size, *rest)

    monkeypatch.setattr(training, "load_dataset", recording)
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "tree")]) in (0, None)
    assert sizes == [12]  # the model's own input size, not the folder default of 32


def test_data_options_are_declared_once_for_every_command():
    from blockswap.cli import make_parser

    sub = next(a for a in make_parser()._actions if a.dest == "command")
    seen = {}
    for name, parser in sub.choices.items():
        actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
        if "--dataset" not in actions or name.startswith("detection"):
            continue
        assert actions["--dataset"].choices == list(ds.DATASETS), name
        for flag in ("--data-dir", "--image-size", "--download"):
            if flag in actions:
                seen.setdefault(flag, set()).add(actions[flag].help)
    assert {flag: len(helps) for flag, helps in seen.items()} == {"--data-dir": 1, "--image-size": 2, "--download": 1}


def test_folder_reads_grey_palette_and_transparent_images_as_rgb(tmp_path):
    from PIL import Image

    write_tree(tmp_path, {"a": 2, "b": 2})
    Image.fromarray(np.full((9, 13), 77, np.uint8)).save(tmp_path / "a" / "grey.png")
    Image.fromarray(np.full((9, 9, 4), 200, np.uint8)).save(tmp_path / "b" / "alpha.png")
    Image.fromarray(np.full((9, 9, 3), 50, np.uint8)).convert("P").save(tmp_path / "b" / "palette.gif")
    d = load_dataset("folder", tmp_path, image_size=8, val_size=1)
    assert len(d.train) + len(d.val) + len(d.test) == 7
    grey = [img for img in torch.cat([d.train.images, d.val.images, d.test.images]) if (img == 77).all()]
    assert len(grey) == 1 and grey[0].shape == (3, 8, 8)
