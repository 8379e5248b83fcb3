"""COCO-2017 in its own on-disk layout, read with pycocotools.

    <data_dir>/coco/train2017/*.jpg
    <data_dir>/coco/val2017/*.jpg
    <data_dir>/coco/annotations/instances_train2017.json
    <data_dir>/coco/annotations/instances_val2017.json

An item is an image (float, 0..1, CHW) and torchvision's detection target: boxes (x1, y1, x2, y2),
labels (COCO category ids), masks (one HxW uint8 mask per object, from the polygons or RLE),
image_id, area, iscrowd. As in torchvision's reference, crowd regions and boxes of no area are
not targets, and training skips images left without a target; evaluation keeps every image.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import BlockswapError

SPLITS = ("train", "val")
YEAR = "2017"


def coco_root(data_dir) -> Path:
    return Path(data_dir) / "coco"


def split_paths(data_dir, split: str) -> tuple[Path, Path]:
    if split not in SPLITS:
        raise BlockswapError(f"COCO split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = coco_root(data_dir)
    return root / f"{split}{YEAR}", root / "annotations" / f"instances_{split}{YEAR}.json"


def missing_message(data_dir, split: str) -> str:
    images, annotations = split_paths(data_dir, split)
    return (
        f"COCO {split}{YEAR} is not in {coco_root(data_dir)}: put the images in {images}/ and "
        f"{annotations.name} in {annotations.parent}/ (train2017.zip, val2017.zip and "
        f"annotations_trainval2017.zip from https://cocodataset.org/#download; this machine does not download them)"
    )


def load_coco_api(path: Path):
    """pycocotools' COCO index of an annotations file, its chatter silenced; a bad file is one line."""
    from pycocotools.coco import COCO  # only for COCO: the classification commands never need it

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BlockswapError(f"{path} is not a COCO annotations file: {err}") from None
    except (KeyError, TypeError, AssertionError, ValueError, AttributeError) as err:
        raise BlockswapError(f"{path} is not a COCO instances file ({type(err).__name__}: {err})") from None


class CocoDetection(torch.utils.data.Dataset):
    def __init__(self, data_dir, split: str, train: bool = False, limit: int | None = None):
        images, annotations = split_paths(data_dir, split)
        if not images.is_dir() or not annotations.is_file():
            raise BlockswapError(missing_message(data_dir, split))
        self.images = images
        self.annotations = annotations
        self.coco = load_coco_api(annotations)
        ids = sorted(self.coco.imgs)
        if train:
            ids = [i for i in ids if self._targets(i)]
        if limit is not None:
            ids = ids[:limit]
        if not ids:
            raise BlockswapError(f"{annotations} lists no image{' with objects' if train else ''} to use")
        self.ids = ids
        self.train = train

    def __len__(self) -> int:
        return len(self.ids)

    def _targets(self, image_id: int) -> list[dict]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        return [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] > 1e-3 and a["bbox"][3] > 1e-3]

    def image(self, image_id: int) -> Image.Image:
        info = self.coco.imgs[image_id]
        path = self.images / info["file_name"]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise BlockswapError(f"{path} is listed in {self.annotations} but is missing") from None
        except (UnidentifiedImageError, OSError) as err:
            raise BlockswapError(f"{path} is not a readable image: {err}") from None

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        img = self.image(image_id)
        w, h = img.size
        anns = self._targets(image_id)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        masks = [self.coco.annToMask(a) for a in anns]
        target = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8),
            "image_id": image_id,
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        for key in ("boxes", "labels", "masks", "area", "iscrowd"):
            target[key] = target[key][keep]
        tensor = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        return tensor, target


def horizontal_flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """torchvision reference's training augmentation: the image, its boxes and masks mirrored."""
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def collate(batch):
    return tuple(zip(*batch))
