"""The data options every dataset-reading or dataset-costing command takes, declared once.

`--dataset`, `--data-dir`, `--image-size` and `--download` mean the same in every command, so they
are one argument group with one help text each; a command picks the ones it uses.
"""

from __future__ import annotations

import argparse
import math

from ..data.datasets import DATASETS, dataset_info
from ..errors import BlockswapError

FIXED_SIZE = ", ".join(d.name for d in DATASETS.values() if not d.resizable)


def dataset_name(text: str) -> str:
    """A registered dataset name; the registry's own message (with the allowed names) otherwise."""
    try:
        return dataset_info(text).name
    except BlockswapError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_data_options(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    default: str | None = None,
    default_from: str | None = None,
    download: bool = False,
    data_dir_default: str | None = "data",
) -> argparse._ArgumentGroup:
    """Add the data group to `parser`: --dataset, --data-dir and --image-size, and --download when
    the command may fetch files. `default` is the dataset used when --dataset is not given;
    `default_from` says where a command takes it from instead (a model). `data_dir_default` None
    lets a config file's data_dir apply (the flag still means 'data' when neither gives one).
    Costing commands take --data-dir too: a folder dataset's class count is its class folders."""
    group = parser.add_argument_group("data", "which dataset, where its files are, and the image size")
    where = "; ".join(f"{d.name}: {d.where}" for d in DATASETS.values())
    fallback = f" (default: {default_from or default})" if (default_from or default) else ""
    group.add_argument(
        "--dataset",
        type=dataset_name,
        choices=list(DATASETS),
        required=required,
        default=default,
        help=f"the dataset: its image size and number of classes, and where its files are "
        f"(DATA is --data-dir; {where}){fallback}",
    )
    group.add_argument(
        "--data-dir", default=data_dir_default, metavar="DATA", help="folder holding the dataset files (default: data)"
    )
    sizes = f" (default: {default_from + ' or ' if default_from else ''}the dataset's own)"
    group.add_argument(
        "--image-size",
        type=int,
        metavar="PIXELS",
        help=f"side of the square input images; {FIXED_SIZE} are stored at 32 px and take no other "
        f"size, the others are resized{sizes}",
    )
    if download:
        group.add_argument(
            "--download", action="store_true", help="download missing dataset files when the network allows"
        )
    return group


def parse_channels(text: str | None, what: str) -> tuple[float, float, float] | None:
    """Three comma-separated numbers (red, green, blue), for --mean and --std."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values) or (what == "std" and min(values) <= 0):
        positive = " positive" if what == "std" else ""
        raise BlockswapError(f"--{what} takes three{positive} numbers, red,green,blue (0..1 scale), got {text!r}")
    return values


def add_normalisation_options(parser: argparse.ArgumentParser, default: str) -> None:
    """--mean and --std: the input normalisation, when it is not `default` (a pretrained teacher's,
    which its students are trained with, say)."""
    parser.add_argument("--mean", help=f"input normalisation R,G,B (0..1 scale); default: {default}")
    parser.add_argument("--std", help=f"input normalisation R,G,B, with --mean; default: {default}")


def normalisation(args, default: str) -> tuple[tuple | None, tuple | None]:
    """(mean, std) of --mean and --std, both or neither (None, None: `default`)."""
    mean, std = parse_channels(args.mean, "mean"), parse_channels(args.std, "std")
    if (mean is None) != (std is None):
        raise BlockswapError(f"--mean and --std go together: give both, or neither for {default}")
    return mean, std
