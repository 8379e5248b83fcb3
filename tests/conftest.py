"""pytest configuration: the workflow runs several test modules read, each made once per session.

Shared paths and commands live in helpers.py. A test that deletes or damages files of a shared run
works on its own copy (helpers.copy_run); the others only read it or dry-run Snakemake on it.
"""

import time

import pytest
from cocofiles import write_coco
from datafiles import (
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_imagenet,
    write_svhn,
    write_teacher_weights,
    write_torchvision_resnet34,
)
from helpers import TINY, reads_data_files, run_miniature, snakemake


@pytest.fixture(scope="session")
def tiny_run(miniature):
    """The default configuration under its miniature overlay (helpers.TINY), run end to end (`all`)
    once. Read by test_workflow.py (every output, the report, reruns and dry runs; the deletion tests
    on copies) and test_paper_configs.py (the default's row checks)."""
    return miniature("config.yaml")


@pytest.fixture(scope="session")
def tiny_search_dry_run(tmp_path_factory):
    """`snakemake -n -p search` of the tiny run's configuration (helpers.TINY) in an empty folder.
    Read by test_workflow.py (the jobs of one stage) and test_integrity.py (the command of select)."""
    workdir = tmp_path_factory.mktemp("tiny-search")
    return snakemake("-n", "-p", "search", "--directory", workdir, "--configfile", *TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """All datasets in one data folder (and a user's own network with its images), and a torch hub
    cache holding the ResNet-34 weight file."""
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=20)
    write_cifar100(root)
    write_svhn(root)
    write_imagenet(root, classes=1000, per_class=1)
    write_coco(root)
    # A user's own network (config/own-network.yaml): a 3-class torchvision ResNet-50, a ResNet-18 (its
    # basic-block variant, tests/miniature/variants/own-network-resnet-18.yaml) and their images.
    write_teacher_weights(root / "own-network" / "resnet50.pth", "torchvision", "resnet50", 3)
    write_teacher_weights(root / "own-network" / "resnet18.pth", "torchvision", "resnet18", 3)
    write_image_folder(root / "own-network" / "images", classes=3, per_class=16)
    torch_home = tmp_path_factory.mktemp("torch-home")
    write_torchvision_resnet34(torch_home / "hub" / "checkpoints" / "resnet34-b627a593.pth")
    return root, torch_home


@pytest.fixture(scope="session")
def miniature(tmp_path_factory, request):
    """miniature(NAME): the folder of config/NAME run end to end (`all`) in miniature, once per session.
    Read by test_paper_configs.py (every shipped configuration); the default's is also the tiny run
    (tiny_run) and test_evolution.py's start (the `compare` target, on a copy)."""
    runs = {}

    def run(name):
        if name not in runs:
            workdir = tmp_path_factory.mktemp(f"miniature-{name.removesuffix('.yaml')}-")
            start = time.perf_counter()
            # The data folder is made only for a configuration that reads one (not digits).
            data = request.getfixturevalue("tiny_data") if reads_data_files(name) else None
            proc = run_miniature(name, data, workdir)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            print(f"{name}: {time.perf_counter() - start:.0f} s")
            runs[name] = workdir
        return runs[name]

    return run
