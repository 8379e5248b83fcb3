"""The dataset registry: scikit-learn's digits (offline stand-in for CIFAR-10), CIFAR-10/100, SVHN,
ImageNet, and `folder`, the user's own ImageFolder-style tree (folder.py).

What is known of a dataset without reading it (classes, image size, where its files go) is here and
needs no torch, so that costing and planning a workflow stay light; loaders.py reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import BlockswapError
from .folder import FOLDER_DEFAULT_SIZE, class_names

# Normalisation constants, each with its source.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # docs/paper.md s.4 (attention-transfer / Cutout code)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)  # per-channel statistics of the CIFAR-100 training set
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)  # per-channel statistics of the SVHN training set
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224
IMAGENET_RESIZE = 256  # evaluation: resize the short side to 256, centre-crop 224

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


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("digits", 10, DIGITS_DEFAULT_SIZE, "bundled with scikit-learn", train_images=1077),
        DatasetInfo(
            "cifar10",
            10,
            32,
            "DATA/cifar-10-batches-py",
            resizable=False,
            train_images=50_000,
        ),
        DatasetInfo(
            "cifar100",
            100,
            32,
            "DATA/cifar-100-python",
            resizable=False,
            train_images=50_000,
        ),
        DatasetInfo("svhn", 10, 32, "DATA/svhn/{train,test}_32x32.mat", resizable=False, train_images=73_257),
        DatasetInfo("imagenet", 1000, IMAGENET_SIZE, "DATA/imagenet/{train,val}/<class>/", train_images=1_281_167),
        DatasetInfo(
            "folder",
            None,
            FOLDER_DEFAULT_SIZE,
            "DATA/<class>/<images> or DATA/{train,test}/<class>/<images>",
        ),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: not a name at all (a damaged model record's list)
        raise BlockswapError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}") from None
