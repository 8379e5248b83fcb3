"""Data-parallel training: N processes train the network one process trains (CPU, gloo)."""

import errno
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from datafiles import write_imagenet
from torch import nn

from blockswap import BlockswapError, build_model
from blockswap.cli import main
from blockswap.data.loader import epoch_batches
from blockswap.data.loaders import load_dataset
from blockswap.seeds import derive_seed
from blockswap.training import distributed
from blockswap.training.checkpoint import save_model
from blockswap.training.config import TrainConfig
from blockswap.training.distributed import GlobalBatchNorm2d, World, world_from_env
from blockswap.training.train import Trainer

SIZE = 8


def test_torchrun_environment_is_read_and_checked():
    assert world_from_env({}) is None
    world = world_from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert world == World(rank=2, size=4, local_rank=0) and world.shard == (2, 4) and not world.is_main
    with pytest.raises(BlockswapError, match="RANK, LOCAL_RANK is not"):
        world_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(BlockswapError, match="inconsistent torchrun variables: RANK=2, WORLD_SIZE=2"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(BlockswapError, match="must be whole numbers"):
        world_from_env({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"})


@pytest.fixture
def gloo_group():
    """A one-process gloo group in this process, torn down afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=0, world_size=1)
        try:
            yield dist.new_group()
        finally:
            dist.destroy_process_group()


@pytest.mark.slow
def test_global_batchnorm_is_batchnorm_over_the_whole_batch(gloo_group):
    # In one process the global batch is the local one: outputs, gradients and running statistics
    # must be BatchNorm2d's (the cross-process sums are exercised by the two-process run below).
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(5)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    converted = GlobalBatchNorm2d(nn.BatchNorm2d(5), gloo_group)
    converted.load_state_dict(reference.state_dict())
    x = torch.randn(6, 5, 4, 3) * 3 + 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(6, 5, 4, 3)
    for _ in range(2):
        ya, yb = reference(xa), converted(xb)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
        ya.backward(grad)
        yb.backward(grad)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(converted.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(converted, name), getattr(reference, name))
    torch.testing.assert_close(converted.eval()(x), reference.eval()(x))


def folder_crops(data, epoch: int, shard=(0, 1)) -> dict[int, torch.Tensor]:
    """{global image index: its augmented image} in epoch `epoch` of a run seeded 1 (this shard's)."""
    batches = epoch_batches(data, 4, derive_seed(1, epoch), cutout=False, workers=0, shard=shard)
    return {i: x for indices, (xs, _) in zip(batches.sampler, batches) for i, x in zip(indices, xs)}


def save_rank_crops(world, device, data, out: Path) -> None:
    crops = [folder_crops(data, epoch, world.shard) for epoch in (0, 1)]
    torch.save(crops, out / f"rank{world.rank}.pt")


@pytest.mark.slow
def test_two_processes_augment_each_folder_image_as_one_process(tmp_path):
    # Two gloo ranks, each reading its share of every batch of noise JPEGs: each image's random
    # resized crop and flip in an epoch are those one process gives it (workers: test_datasets.py).
    write_imagenet(tmp_path, classes=2, per_class=5)
    data = load_dataset("imagenet", tmp_path, image_size=16)
    distributed.spawn(2, "cpu", save_rank_crops, data, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    one = [folder_crops(data, epoch) for epoch in (0, 1)]
    for epoch, crops in enumerate(one):
        two = ranks[0][epoch] | ranks[1][epoch]
        assert sorted(two) == sorted(crops) == list(range(10))
        assert all(torch.equal(two[i], x) for i, x in crops.items()), f"epoch {epoch}"
    assert not any(torch.equal(one[1][i], x) for i, x in one[0].items())


class StopAfterFirstEpoch(Exception):
    pass


def stop_after_first_epoch(line):
    if line.startswith("epoch 1/"):  # logged once the epoch's checkpoint is written
        raise StopAfterFirstEpoch


@pytest.mark.slow
def test_two_processes_resume_and_finish_a_one_process_run_identically(tmp_path):
    # A distilled, SNIP-pruned student: epoch 1 on one process (then killed), epoch 2 resumed on
    # two (gloo), against an uninterrupted one-process run. Digits' 1077 training images in
    # batches of 32 end with a batch of 21, split 10 / 11 between the ranks. lr 0.02: at 0.1 this
    # small network is chaotic (a 1e-7 change of the initial weights moves final weights by ~1),
    # so no float tolerance could compare two runs.
    teacher = tmp_path / "teacher"
    save_model(build_model("wrn-10-2", seed=5), teacher / "model.pt", (SIZE, SIZE), "digits")
    settings = dict(
        arch="wrn-10-1", epochs=2, batch_size=32, lr=0.02, seed=1, prune_params=60000, beta=50.0, image_size=SIZE
    )
    cfg = TrainConfig(dataset="digits", teacher=str(teacher), prune="snip", **settings)
    ref = Trainer(cfg, tmp_path / "one", torch.device("cpu"), progress=False, log=lambda *_: None).run()
    out = tmp_path / "two"
    with pytest.raises(StopAfterFirstEpoch):
        Trainer(cfg, out, torch.device("cpu"), progress=False, log=stop_after_first_epoch).run()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    argv = [
        "train",
        "--dataset",
        "digits",
        "--teacher",
        str(teacher),
        "--prune",
        "snip",
        *flags,
        "--device",
        "cpu",
        "--nproc",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    run = json.loads((out / "metrics.json").read_text())
    assert run["processes"] == 2 and run["fingerprint"] == ref["fingerprint"]
    assert run["params"] == ref["params"] == 60000
    assert run["test_error"] == ref["test_error"] and run["test_error_top5"] == ref["test_error_top5"]
    a, b = (torch.load(tmp_path / name / "model.pt", weights_only=True) for name in ("one", "two"))
    for name, x in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], x, rtol=1e-4, atol=1e-5, msg=name)
    assert all(torch.equal(b["masks"][n], m) for n, m in a["masks"].items())
    one, two = (pd.read_csv(tmp_path / name / "history.csv") for name in ("one", "two"))
    pd.testing.assert_frame_equal(two.drop(columns="seconds"), one.drop(columns="seconds"), rtol=1e-5)
    assert not (out / "checkpoint.pt").exists()


def fill_the_disk(world, device, path: Path) -> None:
    if world.rank == 0:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.slow
def test_a_full_disk_in_a_rank_is_one_line(tmp_path):
    target = tmp_path / "o" / "checkpoint.pt"
    with pytest.raises(BlockswapError) as failure:
        distributed.spawn(2, "cpu", fill_the_disk, target)
    assert str(failure.value) == f"{target}: No space left on device"


@pytest.mark.slow
def test_an_error_in_a_rank_is_one_line(tmp_path, capsys):
    other = tmp_path / "t100"
    save_model(build_model("wrn-10-1", num_classes=100), other / "model.pt", (SIZE, SIZE), "cifar100")
    code = main(
        [
            "train",
            "--arch",
            "wrn-10-1",
            "--dataset",
            "digits",
            "--image-size",
            str(SIZE),
            "--epochs",
            "1",
            "--teacher",
            str(other),
            "--device",
            "cpu",
            "--nproc",
            "2",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "has 100 classes but digits has 10" in err and err.count("\n") == 1, err
    assert not Path(tmp_path / "o" / "metrics.json").exists()
