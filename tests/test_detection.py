"""Table 4 pieces: the detector over any genotype, the COCO reader, COCOeval and the
Fisher search through the detection loss, on a tiny COCO-format folder."""

import subprocess

import pytest
import torch
from cocofiles import write_coco
from helpers import BIN, ROOT

from blockswap.detection import AP_NAMES
from blockswap.detection.coco import CocoDetection, horizontal_flip
from blockswap.detection.evaluate import coco_metrics
from blockswap.detection.model import backbone_cost, build_detector, detector_cost
from blockswap.detection.search import coco_minibatch, detection_fisher
from blockswap.detection.train import (
    DetectionTrainConfig,
    load_detector,
    train_detector,
)
from blockswap.errors import BlockswapError
from blockswap.networks.architectures import NetworkSpec

BLOCKSWAP = str(BIN / "blockswap")


pytestmark = pytest.mark.slow  # builds and trains detectors end to end


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_coco(root)
    return root


def test_backbone_is_the_classifier_less_resnet_and_costs_agree():
    spec = NetworkSpec.create("resnet-34", "G(N)", 1)
    cost = backbone_cost("resnet-34", "G(N)", (224, 224))
    full = spec.cost((224, 224))
    assert cost["params"] == full.params - (512 + 1) and cost["macs"] == full.macs - 512
    model = build_detector("resnet-34", "G(N)", seed=0, min_size=64, max_size=96)
    assert sum(p.numel() for p in model.backbone.body.parameters()) == cost["params"]
    total = detector_cost(model, "resnet-34", "G(N)")
    assert total.backbone_params == cost["params"] and total.total_params > total.backbone_params
    assert total.total_macs > total.backbone_macs > 0


def test_four_sections_feed_the_fpn_and_the_seed_fixes_every_weight():
    a = build_detector("resnet-18", "G(4)", seed=3, min_size=64, max_size=96)
    b = build_detector("resnet-18", "G(4)", seed=3, min_size=64, max_size=96)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    features = a.backbone(torch.zeros(1, 3, 64, 64))
    assert list(features) == ["0", "1", "2", "3", "pool"] and all(f.shape[1] == 256 for f in features.values())
    assert len(a.backbone.body.probes) == 8


def test_coco_reader_gives_torchvision_targets(coco):
    data = CocoDetection(coco, "train", train=True)
    image, target = data[0]
    assert image.shape == (3, 120, 160) and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].shape == (3, 4) and target["masks"].shape == (3, 120, 160)
    assert set(target["labels"].tolist()) == {1, 3}
    flipped, ftarget = horizontal_flip(image, target)
    assert torch.equal(flipped.flip(-1), image) and torch.equal(ftarget["masks"].flip(-1), target["masks"])
    assert torch.allclose(ftarget["boxes"][:, 0], 160 - target["boxes"][:, 2])


def test_missing_coco_is_one_line_saying_where(tmp_path):
    with pytest.raises(BlockswapError, match="put the images in .*train2017/ and instances_train2017.json"):
        CocoDetection(tmp_path, "train")
    proc = subprocess.run(
        [
            BLOCKSWAP,
            "detection",
            "evaluate",
            "--data-dir",
            str(tmp_path),
            "--model",
            str(tmp_path / "none.pt"),
            "--out",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_ground_truth_as_detections_scores_100(coco):
    data = CocoDetection(coco, "val")
    gt = data.coco
    detections = []
    for ann in gt.loadAnns(gt.getAnnIds()):
        rle = gt.annToRLE(ann)
        rle["counts"] = rle["counts"].decode("ascii")
        detections.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "segmentation": rle,
                "score": 1.0,
            }
        )
    for iou in ("bbox", "segm"):
        metrics = coco_metrics(gt, [dict(d) for d in detections], iou, data.ids)
        assert list(metrics) == list(AP_NAMES)
        assert all(v == pytest.approx(100.0) for v in metrics.values()), (iou, metrics)
    # Nothing detected: AP 0 everywhere there is ground truth.
    assert all(v == 0.0 for v in coco_metrics(gt, [], "bbox", data.ids).values())


def test_fisher_through_the_detection_loss_is_positive_and_reproducible(coco):
    data = CocoDetection(coco, "train", train=True)
    images, targets = coco_minibatch(data, 2, seed=0, device=torch.device("cpu"))
    values = []
    for _ in range(2):
        model = build_detector("resnet-18", "G(4)", seed=1, min_size=64, max_size=96)
        values.append(detection_fisher(model, images, targets, seed=5))
    assert values[0] > 0 and values[0] == values[1]


def test_reference_schedule():
    config = DetectionTrainConfig(batch_size=8)
    assert config.base_lr == pytest.approx(0.01)  # 0.02 for 16 images, scaled linearly
    assert config.lr_at(0, 0, 5000) == pytest.approx(0.01 * 1e-3)
    assert config.lr_at(0, 1000, 5000) == pytest.approx(0.01)
    assert config.lr_at(16, 0, 5000) == pytest.approx(0.001) and config.lr_at(22, 0, 5000) == pytest.approx(1e-4)
    with pytest.raises(BlockswapError):
        DetectionTrainConfig(epochs=0)


def test_training_resumes_after_an_interrupted_epoch(coco, tmp_path):
    config = DetectionTrainConfig(
        arch="resnet-18",
        genotype="G(4)",
        data_dir=str(coco),
        epochs=2,
        batch_size=2,
        warmup_iters=1,
        min_size=64,
        max_size=96,
        limit=2,  # one step per epoch
        seed=2,
    )

    def stop_after_first(line):
        if line.startswith("epoch 1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_detector(config, tmp_path / "cut", torch.device("cpu"), log=stop_after_first)
    assert (tmp_path / "cut" / "checkpoint.pt").is_file() and not (tmp_path / "cut" / "model.pt").exists()
    lines = []
    train_detector(config, tmp_path / "cut", torch.device("cpu"), log=lines.append)
    assert lines[0].startswith("resuming") and not (tmp_path / "cut" / "checkpoint.pt").exists()
    train_detector(config, tmp_path / "whole", torch.device("cpu"), log=lambda line: None)
    cut, _, _ = load_detector(tmp_path / "cut" / "model.pt")
    whole, _, _ = load_detector(tmp_path / "whole" / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(cut.state_dict().values(), whole.state_dict().values()))


def test_plan_of_the_coco_configuration(capsys):
    from blockswap.cli import main

    assert main(["plan", str(ROOT / "config" / "paper-coco.yaml")]) == 0
    out = capsys.readouterr().out
    assert "train (2 backbones)" in out and "52" in out
