"""COCOeval of a detector: box and mask AP, AP50, AP75, APS, APM, APL (in %).

Detections are written as COCO results (boxes as x, y, w, h; masks as RLE of the soft mask
thresholded at 0.5, as torchvision's reference does). A metric COCOeval cannot define (no ground
truth of that size) is -1 there and empty (NaN) here.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable

import numpy as np
import torch

from ..errors import BlockswapError
from . import AP_NAMES, IOU_TYPES
from .coco import CocoDetection, collate


def coco_metrics(coco_gt, detections: list[dict], iou_type: str, image_ids: Iterable[int]) -> dict:
    """The six AP numbers (%) of `detections` (COCO result dicts) against `coco_gt`."""
    from pycocotools.cocoeval import COCOeval  # only for COCO: the classification commands never need it

    if iou_type not in IOU_TYPES:
        raise BlockswapError(f"IoU type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")
    image_ids = sorted(image_ids)
    if not detections:  # COCOeval cannot load an empty result list: nothing detected is AP 0
        return {name: (0.0 if _has_gt(coco_gt, image_ids, name) else math.nan) for name in AP_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: (float(v) * 100 if v >= 0 else math.nan) for name, v in zip(AP_NAMES, evaluator.stats[:6])}


def _has_gt(coco_gt, image_ids, name: str) -> bool:
    ranges = {"APS": (0, 32**2), "APM": (32**2, 96**2), "APL": (96**2, math.inf)}
    low, high = ranges.get(name, (0, math.inf))
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=image_ids, iscrowd=False))
    return any(low <= a["area"] < high for a in anns)


def to_results(image_id: int, output: dict) -> list[dict]:
    """One image's detector output as COCO result dicts with boxes and RLE masks."""
    import pycocotools.mask as mask_util  # only for COCO: the classification commands never need it

    boxes = output["boxes"].detach().cpu().numpy().astype(float)
    scores = output["scores"].detach().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    results = []
    masks = output.get("masks")
    binary = None
    if masks is not None and len(masks):
        binary = (masks[:, 0] > 0.5).cpu().numpy().astype(np.uint8)
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        x1, y1, x2, y2 = box
        result = {
            "image_id": int(image_id),
            "category_id": int(label),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(score),
        }
        if binary is not None:
            rle = mask_util.encode(np.asfortranarray(binary[i]))
            rle["counts"] = rle["counts"].decode("ascii")
            result["segmentation"] = rle
        results.append(result)
    return results


@torch.no_grad()
def evaluate_detector(
    model, data: CocoDetection, device: torch.device, batch_size: int = 1, log=lambda line: None
) -> dict:
    """Box and mask metrics of `model` on every image of `data` (torchvision's test-time settings)."""
    model.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)
    detections = []
    for step, (images, targets) in enumerate(loader):
        outputs = model([img.to(device) for img in images])
        for target, output in zip(targets, outputs):
            detections += to_results(target["image_id"], output)
        if step % 500 == 0:
            log(f"evaluated {min((step + 1) * batch_size, len(data))}/{len(data)} images")
    return {
        "images": len(data),
        "detections": len(detections),
        **{iou: coco_metrics(data.coco, detections, iou, data.ids) for iou in IOU_TYPES},
    }
