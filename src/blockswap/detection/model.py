"""Mask R-CNN with an FPN over a pre-activation ResNet of any genotype.

The backbone is the ImageNet ResNet of `models.py` without its classifier: the stem and the blocks,
the output of each of the four sections (after its last residual add) feeding torchvision's
FeaturePyramidNetwork (256 channels, plus a max-pooled fifth level), as in torchvision's
`maskrcnn_resnet50_fpn`. The detector itself is torchvision's `MaskRCNN` with its defaults
(91 COCO category ids, images resized to 800-1333 unless told otherwise).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..errors import BlockswapError
from ..networks.architectures import GenotypeLike, NetworkSpec, parse_arch
from ..networks.layers import Classifier, sequence_cost
from ..networks.models import Network, build_model, initialise
from ..search.sampling import CostTable, cost_of

FPN_CHANNELS = 256
COCO_CLASSES = 91  # torchvision's convention: COCO category ids 1..90 and the background 0
DETECTION_ARCHS = ("resnet-18", "resnet-34")
# The RoIs the heads see per image at test time (torchvision's defaults): box head on the RPN's
# post-NMS proposals, mask head on the kept detections. Used for the detector's MACs.
TEST_PROPOSALS = 1000
TEST_DETECTIONS = 100


class ResNetBackbone(nn.Module):
    """Stem and blocks of a `Network`; returns the four section outputs, keeps the block probes."""

    def __init__(self, network: Network):
        super().__init__()
        self.stem = network.stem
        self.blocks = network.blocks
        self.stage_ends = sorted(network.stage_ends)
        self.widths = [network.spec.arch.slots[i].cout for i in self.stage_ends]
        self.probes: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features, probes = OrderedDict(), []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x, probe = block(x)
            probes.append(probe)
            if i in self.stage_ends:
                features[str(len(features))] = x
        self.probes = probes  # each block's residual branch: the Fisher potential's probes
        return features


class BackboneFPN(nn.Module):
    """The ResNet's sections through an FPN; `out_channels` is what MaskRCNN reads."""

    def __init__(self, body: ResNetBackbone):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.widths, FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
        self.out_channels = FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def check_arch(arch: str):
    parsed = parse_arch(arch)
    if parsed.name not in DETECTION_ARCHS:
        raise BlockswapError(f"a detection backbone is one of {', '.join(DETECTION_ARCHS)}, got {arch!r}")
    return parsed


def backbone_spec(arch: str, genotype: GenotypeLike) -> NetworkSpec:
    return NetworkSpec.create(check_arch(arch), genotype, num_classes=1)


def build_detector(
    arch: str,
    genotype: GenotypeLike,
    seed: int,
    min_size: int = 800,
    max_size: int = 1333,
    num_classes: int = COCO_CLASSES,
) -> MaskRCNN:
    """Mask R-CNN over `arch` with `genotype`, every weight drawn from `seed` alone: the backbone
    by this package's initialisation (docs/paper.md s.3), the FPN and the heads by torchvision's own
    initialisers under a generator-seeded global state."""
    if min_size < 1 or max_size < min_size:
        raise BlockswapError(f"image sizes need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    network = build_model(check_arch(arch), genotype, num_classes=1, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MaskRCNN(
            BackboneFPN(ResNetBackbone(network)), num_classes=num_classes, min_size=min_size, max_size=max_size
        )
    initialise(model.backbone.body, torch.Generator().manual_seed(seed))
    return model


def backbone_cost_table(arch: str, candidates, input_size: tuple[int, int]) -> CostTable:
    """The sampler's cost table for a backbone: a classifier-less network's stem and blocks."""
    parsed = check_arch(arch)
    table = CostTable.build(parsed, candidates, input_size, 1)
    # CostTable counts a classifier (features -> 1 class); a backbone has none.
    head, _, _ = sequence_cost(parsed.head + (Classifier(parsed.features, 1),), *parsed.feature_sizes(input_size)[-1])
    table.fixed = table.fixed - np.array([head.params, head.macs, head.ops], dtype=np.int64)
    return table


def backbone_cost(arch: str, genotype: GenotypeLike, input_size: tuple[int, int]) -> dict:
    """Params and MACs of the backbone alone (stem and blocks) at `input_size`."""
    spec = backbone_spec(arch, genotype)
    table = backbone_cost_table(arch, tuple(dict.fromkeys(spec.genotype)), input_size)
    cost = cost_of(table, spec.genotype)
    return {"params": cost.params, "macs": cost.macs}


def _macs(module: nn.Module, *inputs) -> tuple:
    """MACs of one call of `module` on `inputs`: convolutions (also transposed) and linear layers."""
    total = 0

    def hook(m, args, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += m.in_channels // m.groups * m.out_channels * k * out.shape[0] * out.shape[2] * out.shape[3]
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            x = args[0]
            total += m.in_channels * m.out_channels // m.groups * k * x.shape[0] * x.shape[2] * x.shape[3]
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features * out.numel() // m.out_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total, out


@dataclass
class DetectorCost:
    backbone_params: int
    backbone_macs: int
    total_params: int
    total_macs: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def detector_cost(
    model: MaskRCNN, arch: str, genotype: GenotypeLike, input_size: tuple[int, int] | None = None
) -> DetectorCost:
    """Backbone and whole-detector params and MACs for one image of `input_size` (default: a
    square of the detector's min_size side). The detector's MACs count the
    backbone, FPN and RPN head on the image and the box and mask heads on torchvision's test-time
    RoI counts (1000 proposals, 100 detections); RoI pooling, NMS and anchors are not MACs."""
    size = model.transform.min_size[-1]
    input_size = input_size or (size, size)
    backbone = backbone_cost(arch, genotype, input_size)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        macs, features = _macs(model.backbone, torch.zeros(1, 3, *input_size, device=device))
        head_macs, _ = _macs(model.rpn.head, list(features.values()))
        heads = model.roi_heads
        pooled = heads.box_roi_pool.output_size[0]
        box, _ = _macs(
            nn.Sequential(heads.box_head, heads.box_predictor),
            torch.zeros(TEST_PROPOSALS, FPN_CHANNELS, pooled, pooled, device=device),
        )
        masked = heads.mask_roi_pool.output_size[0]
        mask, _ = _macs(
            nn.Sequential(heads.mask_head, heads.mask_predictor),
            torch.zeros(TEST_DETECTIONS, FPN_CHANNELS, masked, masked, device=device),
        )
    finally:
        model.train(was_training)
    total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return DetectorCost(backbone["params"], backbone["macs"], total_params, macs + head_macs + box + mask)
