"""The skeletons of teacher and student networks: CIFAR-style WRN-D-K and ImageNet-style
pre-activation ResNets (basic-block ResNet-18/34, bottleneck ResNet-50/101/152: the
macro-architectures of torchvision's).

An `Architecture` is the skeleton (stem, one `Slot` per block, head); a `NetworkSpec` fills every
slot with a block type from a `Genotype` and can be costed without building anything (or importing
torch); models.py builds its `Network`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import BlockswapError
from .blocks import BlockType, parse_block
from .genotype import Genotype
from .layers import (
    Classifier,
    Conv,
    Cost,
    LayerSpec,
    MaxPool,
    PreActivation,
    sequence_cost,
)

STANDARD = BlockType("S")


@dataclass(frozen=True)
class Slot:
    """A block position: its widths, stride and the stage (section) it belongs to."""

    cin: int
    cout: int
    stride: int
    stage: int


@dataclass(frozen=True)
class Architecture:
    name: str
    stem: tuple[LayerSpec, ...]
    slots: tuple[Slot, ...]
    head: tuple[LayerSpec, ...]  # between the last block and the classifier
    features: int  # channels entering the classifier
    standard: BlockType = STANDARD  # every block of the unswapped network (genotype None)

    @property
    def depth(self) -> int:
        return len(self.slots)

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of each stage's last block: its output is an attention-transfer point."""
        return tuple(
            i for i, s in enumerate(self.slots) if i + 1 == len(self.slots) or self.slots[i + 1].stage != s.stage
        )

    def feature_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Spatial size entering each block, then the size leaving the last one. Every block type
        at a slot gives the same size (its only strided layer is a padded 3x3 conv)."""
        _, h, w = sequence_cost(self.stem, *input_size)
        sizes = [(h, w)]
        for slot in self.slots:
            sizes.append(Conv(slot.cin, slot.cout, 3, slot.stride).output_size(*sizes[-1]))
        return sizes

    def fixed_cost(self, input_size: tuple[int, int], num_classes: int) -> Cost:
        """Cost of what every genotype of this skeleton shares: the stem, and the head with the classifier."""
        stem, _, _ = sequence_cost(self.stem, *input_size)
        head, _, _ = sequence_cost(
            self.head + (Classifier(self.features, num_classes),), *self.feature_sizes(input_size)[-1]
        )
        return stem + head


def wide_resnet(depth: int, width: int) -> Architecture:
    """WRN-D-K (Zagoruyko & Komodakis): 3 stages of (D-4)/6 basic blocks at 16K/32K/64K."""
    if depth < 10 or (depth - 4) % 6:
        raise BlockswapError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth}")
    per_stage = (depth - 4) // 6
    widths = [16, 16 * width, 32 * width, 64 * width]
    slots = []
    for stage, stride in enumerate([1, 2, 2]):
        for i in range(per_stage):
            cin = widths[stage] if i == 0 else widths[stage + 1]
            slots.append(Slot(cin, widths[stage + 1], stride if i == 0 else 1, stage))
    return Architecture(
        name=f"wrn-{depth}-{width}",
        stem=(Conv(3, widths[0], 3),),
        slots=tuple(slots),
        head=(PreActivation(widths[-1]),),  # the final BN-ReLU, counted by the paper
        features=widths[-1],
    )


@dataclass(frozen=True)
class ResNetShape:
    """Blocks per section and the sections' output widths of an ImageNet ResNet (He et al. 2016)."""

    sections: tuple[int, ...]
    widths: tuple[int, ...]
    standard: str  # the zoo's type closest to the original block: S, or B(4) for its bottleneck


BASIC_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_WIDTHS = (256, 512, 1024, 2048)  # the bottleneck's 4x expansion of 64..512
RESNETS = {
    18: ResNetShape((2, 2, 2, 2), BASIC_WIDTHS, "S"),
    34: ResNetShape((3, 4, 6, 3), BASIC_WIDTHS, "S"),
    50: ResNetShape((3, 4, 6, 3), BOTTLENECK_WIDTHS, "B(4)"),
    101: ResNetShape((3, 4, 23, 3), BOTTLENECK_WIDTHS, "B(4)"),
    152: ResNetShape((3, 8, 36, 3), BOTTLENECK_WIDTHS, "B(4)"),
}
RESNET_STEM_WIDTH = 64


def preact_resnet(depth: int) -> Architecture:
    """Pre-activation ResNet for ImageNet (docs/paper.md s.8): 7x7/2 stem + BN-ReLU + 3x3/2 max-pool
    (torchvision's stem, layer for layer), four sections, no final BN, 1x1 projection shortcuts
    without BN, stride 2 on the first block of sections 2-4. ResNet-18/34 sections are 64..512
    channels wide; ResNet-50/101/152 are bottleneck networks whose sections put out 256..2048 channels
    (each block's type decides its inner width; all-B(4) is the pre-activation ResNet-50 of He et al.)."""
    if depth not in RESNETS:
        raise BlockswapError(f"ResNet depth must be one of {sorted(RESNETS)}, got {depth}")
    shape = RESNETS[depth]
    slots = []
    cin = RESNET_STEM_WIDTH
    for stage, (blocks, width) in enumerate(zip(shape.sections, shape.widths)):
        for i in range(blocks):
            slots.append(Slot(cin, width, 2 if (i == 0 and stage > 0) else 1, stage))
            cin = width
    return Architecture(
        name=f"resnet-{depth}",
        stem=(
            Conv(3, RESNET_STEM_WIDTH, 7, 2),
            PreActivation(RESNET_STEM_WIDTH),
            MaxPool(RESNET_STEM_WIDTH, 3, 2, 1),
        ),
        slots=tuple(slots),
        head=(),
        features=shape.widths[-1],
        standard=parse_block(shape.standard),
    )


# Architecture names: a full-match pattern and the builder it feeds.
ARCHITECTURES: list[tuple[re.Pattern, Callable[[re.Match], Architecture], str]] = [
    (re.compile(r"wrn-(\d+)-(\d+)"), lambda m: wide_resnet(int(m[1]), int(m[2])), "wrn-D-K (e.g. wrn-40-2)"),
    (re.compile(r"resnet-(\d+)"), lambda m: preact_resnet(int(m[1])), "resnet-18, -34, -50, -101, -152"),
]


def parse_arch(name: str | Architecture) -> Architecture:
    if isinstance(name, Architecture):
        return name
    for pattern, build, _ in ARCHITECTURES:
        match = pattern.fullmatch(str(name).strip().lower())
        if match:
            arch = build(match)
            if arch.slots[0].cout <= 0:
                raise BlockswapError(f"architecture {name!r} has no channels")
            return arch
    allowed = "; ".join(desc for _, _, desc in ARCHITECTURES)
    raise BlockswapError(f"unknown architecture {name!r}; allowed: {allowed}")


GenotypeLike = str | Genotype | Sequence[str | BlockType] | None


def as_genotype(genotype: GenotypeLike, length: int, standard: BlockType = STANDARD) -> Genotype:
    """None = the teacher (all `standard`: S, or B(4) in a bottleneck ResNet); a name = all blocks
    of that type (Moonshine); else a list."""
    if genotype is None:
        return Genotype.uniform(standard, length)
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, str):
        return Genotype.from_spec(genotype, length)
    return Genotype.of(genotype)


@dataclass(frozen=True)
class NetworkSpec:
    """An architecture with every slot filled: enough to cost or build the network."""

    arch: Architecture
    genotype: Genotype
    num_classes: int = 10

    def __post_init__(self):
        if len(self.genotype) != self.arch.depth:
            raise BlockswapError(
                f"genotype has {len(self.genotype)} block types but {self.arch.name} has {self.arch.depth} blocks"
            )
        if self.num_classes < 1:
            raise BlockswapError(f"num_classes must be at least 1, got {self.num_classes}")
        for i, (bt, slot) in enumerate(zip(self.genotype, self.arch.slots)):
            problem = bt.problem_at(slot.cin, slot.cout, slot.stride)
            if problem:
                raise BlockswapError(f"block {i} of {self.arch.name} cannot be {problem}")

    @classmethod
    def create(cls, arch, genotype: GenotypeLike = None, num_classes: int = 10) -> NetworkSpec:
        arch = parse_arch(arch)
        return cls(arch, as_genotype(genotype, arch.depth, arch.standard), num_classes)

    def block_costs(self, input_size: tuple[int, int]) -> list[Cost]:
        sizes = self.arch.feature_sizes(input_size)[:-1]
        return [
            bt.layout(s.cin, s.cout, s.stride).cost(h, w)[0]
            for bt, s, (h, w) in zip(self.genotype, self.arch.slots, sizes)
        ]

    def cost(self, input_size: tuple[int, int]) -> Cost:
        """Exact params / MACs / paper ops from the specs alone (no network is built)."""
        return sum(self.block_costs(input_size), self.arch.fixed_cost(input_size, self.num_classes))
