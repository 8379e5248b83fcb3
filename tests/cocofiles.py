"""A tiny COCO-2017 folder written in COCO's own layout: JPEGs of simple shapes and real
`instances_{train,val}2017.json` with boxes, polygon masks and areas (small, medium and large)."""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [
    {"id": 1, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]
SIZE = (160, 120)  # width, height: room for a large object (area > 96^2)


def _shapes(rng, index: int) -> list[tuple[int, list[float]]]:
    """(category, polygon) of the image's objects: one small, one medium and, every other image,
    one large, at places drawn from `rng` so that they do not overlap."""
    shapes = []
    x = int(rng.integers(2, 8))
    side = int(rng.integers(12, 20))  # small: area < 32^2
    shapes.append((1, [x, 4, x + side, 4, x + side, 4 + side, x, 4 + side]))
    base = int(rng.integers(48, 60))  # medium triangle: area = base^2 / 2, between 32^2 and 96^2
    shapes.append((3, [30, 110, 30 + base, 110, 30, 110 - base]))
    if index % 2 == 0:
        side = 100  # large square: area 10^4 > 96^2
        shapes.append((1, [58, 10, 58 + side, 10, 58 + side, 10 + side, 58, 10 + side]))
    return shapes


def _area(polygon: list[float]) -> float:
    xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def write_coco(root: Path, train_images: int = 8, val_images: int = 4, seed: int = 0) -> Path:
    """`root/coco/{train2017,val2017,annotations}`; returns the coco folder."""
    rng = np.random.default_rng(seed)
    folder = root / "coco"
    (folder / "annotations").mkdir(parents=True)
    next_ann = 1
    for split, count, first_id in (("train", train_images, 1000), ("val", val_images, 2000)):
        (folder / f"{split}2017").mkdir()
        images, annotations = [], []
        for i in range(count):
            image_id = first_id + i
            name = f"{image_id:012d}.jpg"
            img = Image.fromarray(rng.integers(0, 60, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
            draw = ImageDraw.Draw(img)
            for category, polygon in _shapes(rng, i):
                draw.polygon(polygon, fill=(230, 40, 40) if category == 1 else (40, 220, 60))
                xs, ys = polygon[0::2], polygon[1::2]
                annotations.append(
                    {
                        "id": next_ann,
                        "image_id": image_id,
                        "category_id": category,
                        "segmentation": [[float(v) for v in polygon]],
                        "area": _area(polygon),
                        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                        "iscrowd": 0,
                    }
                )
                next_ann += 1
            img.save(folder / f"{split}2017" / name, quality=95)
            images.append({"id": image_id, "file_name": name, "width": SIZE[0], "height": SIZE[1]})
        record = {
            "info": {"description": "tiny COCO-format test set"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": CATEGORIES,
        }
        (folder / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(record))
    return folder
