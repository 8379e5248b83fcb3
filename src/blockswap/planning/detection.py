"""What the COCO configuration (Table 4) runs and an estimate of its GPU-hours, for `blockswap plan`.

Nothing here was timed on this repository's detector. The estimate scales one published point:
FlagPerf's run of torchvision's reference Mask R-CNN (ResNet-50-FPN, 26 epochs) on 8 A100s at
149 training images per second, i.e. about 0.054 A100-seconds per training image. The 3M-parameter
backbones here cost a fraction of ResNet-50's MACs, but the FPN, RPN and RoI heads (about 20M of
the detector's 23M parameters) are unchanged, so the estimate is probably high rather than low.
"""

from __future__ import annotations

from dataclasses import dataclass

COCO_TRAIN_IMAGES = 117_266  # train2017 images with at least one usable object (of 118,287)
COCO_VAL_IMAGES = 5_000
TRAIN_SECONDS_PER_IMAGE = 8 / 149  # A100-seconds, at min_size 800 / max_size 1333
EVAL_SECONDS_PER_IMAGE = TRAIN_SECONDS_PER_IMAGE / 3  # a forward pass only
REFERENCE_PIXELS = 800 * 1333


@dataclass(frozen=True)
class DetectionStage:
    stage: str
    runs: int
    epochs: int
    gpu_hours: float


def detection_plan(config: dict) -> list[DetectionStage]:
    d = config["detection"]
    pixels = d["min_size"] * d["max_size"] / REFERENCE_PIXELS
    images = min(d["train_limit"] or COCO_TRAIN_IMAGES, COCO_TRAIN_IMAGES)
    val = min(d["val_limit"] or COCO_VAL_IMAGES, COCO_VAL_IMAGES)
    # A Fisher score costs about one training step (forward and backward) on its minibatch.
    search = d["samples"] * d["search_batch_size"] * TRAIN_SECONDS_PER_IMAGE * pixels / 3600
    train = 2 * d["epochs"] * images * TRAIN_SECONDS_PER_IMAGE * pixels / 3600
    evaluate = 2 * val * EVAL_SECONDS_PER_IMAGE * pixels / 3600
    return [
        DetectionStage("search (Fisher, COCO)", 0, 0, search),
        DetectionStage("train (2 backbones)", 2, 2 * d["epochs"], train),
        DetectionStage("evaluate (COCOeval)", 0, 0, evaluate),
    ]
