"""The block zoo (docs/paper.md s.3) in Moonshine's notation, as one registry of block families.

A `BlockType` is a family name plus its arguments: `S`, `G(g)` / `G(N/k)`, `B(b)`, `BG(b,g)` /
`BG(b,M/k)` and `MBConv(t)`. Families differ by their cheap *unit* (what replaces a 3x3 conv) and
by their *wrapper*:

- basic wrapper (S, G): BN-ReLU-unit-BN-ReLU-unit + shortcut (pre-activation WRN basic block);
- bottleneck wrapper (B, BG, MBConv): BN-ReLU-unit + shortcut.

The shortcut is a 1x1 conv (applied to the pre-activated input) when the shape changes and the
identity otherwise. Each block is wrapped by *its own* type (the released code wrapped a whole
stage by its first block's type, which changes sizes).

Two more families are the blocks of a pretrained torchvision or timm ResNet, kept in a student
where a user compresses only some stages (networks/pretrained.py copies their weights in):
`T` is torchvision's `BasicBlock` and `T(b)` its `Bottleneck` with a 3x3 at N/b channels (ResNet-50:
T(4); Wide ResNet-50-2: T(2)). They are post-activation blocks: unit + shortcut (1x1 conv + BN when
the shape changes), then a ReLU after the sum. The paper's ops convention counts block-level ReLUs of
its pre-activation wrapper; a T block's ops are its MACs, as a torchvision teacher's ops are.

Released-code names (`Conv`, `DConvA4`, `DConvG8`, `DConv`, `ConvB2`, `A4B2`, `G8B2`, `G2B4`,
`DConvB2`, `MBConv6`) are parsed as aliases wherever a block name is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BlockswapError
from .layers import (
    Conv,
    Cost,
    LayerSpec,
    Norm,
    PreActivation,
    Relu,
    sequence_cost,
)

KERNEL = 3  # k in the paper: every spatial conv of the zoo is 3x3


class InvalidAtWidth(BlockswapError):
    """A block type that cannot be built at some channel width (e.g. groups do not divide it)."""


@dataclass(frozen=True)
class Groups:
    """Group count of a grouped conv: an absolute count `g`, or `C/k` (k channels per group).

    `relative=True` with `value=1` is the depthwise case (`N` or `M`).
    """

    value: int
    relative: bool = False

    def resolve(self, channels: int) -> int:
        if self.relative:
            if channels % self.value:
                raise InvalidAtWidth(f"{channels} channels cannot form groups of {self.value}")
            return channels // self.value
        if channels % self.value:
            raise InvalidAtWidth(f"{self.value} groups do not divide {channels} channels")
        return self.value

    def notation(self, symbol: str) -> str:
        if not self.relative:
            return str(self.value)
        return symbol if self.value == 1 else f"{symbol}/{self.value}"


@dataclass(frozen=True)
class BlockType:
    """One entry of the zoo: a family and its arguments. Print gives the paper's notation."""

    family: str
    bottleneck: int = 1  # b: the unit works at M = N / b channels (B, BG)
    groups: Groups = Groups(1)  # grouping of the unit's 3x3 conv (G, BG)
    expansion: int = 1  # t: MBConv's expansion ratio

    @property
    def spec(self) -> Family:
        return FAMILIES[self.family]

    @property
    def name(self) -> str:
        return self.spec.notation(self)

    @property
    def released_name(self) -> str | None:
        return self.spec.released(self)

    def __str__(self) -> str:
        return self.name

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name: G(N/4) -> gn4, BG(2,M/8) -> bg2-m8, S -> s."""
        return re.sub(r"[()/]", "", self.name).replace(",", "-").lower()

    def layout(self, cin: int, cout: int, stride: int) -> BlockLayout | PostActivationLayout:
        """The block's layer specs at the given widths; raises `InvalidAtWidth` if impossible."""
        return WRAPPERS[self.spec.wrapper].layout(self, cin, cout, stride)

    def problem_at(self, cin: int, cout: int, stride: int = 1) -> str | None:
        """Why this type cannot be built at these widths, or None when it can."""
        try:
            self.layout(cin, cout, stride)
        except InvalidAtWidth as err:
            return f"{self.name} at {cin}->{cout} channels: {err}"
        return None


@dataclass(frozen=True)
class BlockLayout:
    """Specs of one wrapped block: a pre-activation and a unit per step, and the shortcut."""

    preacts: tuple[PreActivation, ...]
    units: tuple[tuple[LayerSpec, ...], ...]
    shortcut: Conv | None

    def cost(self, h: int, w: int) -> tuple[Cost, int, int]:
        total = Cost()
        h_in, w_in = h, w
        for preact, unit in zip(self.preacts, self.units):
            total = total + preact.cost(h, w)
            unit_cost, h, w = sequence_cost(unit, h, w)
            total = total + unit_cost
        if self.shortcut is not None:
            total = total + self.shortcut.cost(h_in, w_in)
        return total, h, w


def preactivation_layout(bt: BlockType, cin: int, cout: int, stride: int) -> BlockLayout:
    family = bt.spec
    widths = [(cin, cout, stride)] + [(cout, cout, 1)] * (family.units - 1)
    units = tuple(tuple(family.unit(bt, i, o, s)) for i, o, s in widths)
    preacts = tuple(PreActivation(i) for i, _, _ in widths)
    shortcut = Conv(cin, cout, 1, stride) if (cin != cout or stride != 1) else None
    return BlockLayout(preacts, units, shortcut)


@dataclass(frozen=True)
class PostActivationLayout:
    """Specs of a post-activation (torchvision) block: its unit, the shortcut (1x1 conv + BN) when
    the shape changes, and a ReLU after the sum, which costs no paper op (see the module's notes)."""

    unit: tuple[LayerSpec, ...]
    shortcut: tuple[LayerSpec, ...] | None

    def cost(self, h: int, w: int) -> tuple[Cost, int, int]:
        total, h_out, w_out = sequence_cost(self.unit, h, w)
        if self.shortcut is not None:
            total = total + sequence_cost(self.shortcut, h, w)[0]
        return total, h_out, w_out


def postactivation_layout(bt: BlockType, cin: int, cout: int, stride: int) -> PostActivationLayout:
    unit = tuple(bt.spec.unit(bt, cin, cout, stride))
    shortcut = (Conv(cin, cout, 1, stride), Norm(cout)) if (cin != cout or stride != 1) else None
    return PostActivationLayout(unit, shortcut)


@dataclass(frozen=True)
class Wrapper:
    """How a family's unit is wrapped into a block: its layer specs (modules.py builds the module of
    each wrapper from them)."""

    layout: Callable[[BlockType, int, int, int], BlockLayout | PostActivationLayout]
    description: str


WRAPPERS: dict[str, Wrapper] = {
    "basic": Wrapper(preactivation_layout, "basic (2 units)"),
    "bottleneck": Wrapper(preactivation_layout, "bottleneck (1 unit)"),
    "post-activation": Wrapper(postactivation_layout, "post-activation (torchvision)"),
}


# --- families -----------------------------------------------------------------------------------


def standard_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    return [Conv(cin, cout, KERNEL, stride)]


def grouped_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    # Moonshine's G: grouped 3x3 (in->in), BN, ReLU, pointwise 1x1 (in->out).
    groups = bt.groups.resolve(cin)
    return [Conv(cin, cin, KERNEL, stride, groups), Norm(cin), Relu(), Conv(cin, cout, 1)]


def bottleneck_width(cout: int, b: int) -> int:
    if cout % b:
        raise InvalidAtWidth(f"bottleneck {b} does not divide {cout} channels")
    return cout // b


def bottleneck_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    # 1x1 down to M = N/b, grouped 3x3 at M (carries the stride), 1x1 up to N.
    m = bottleneck_width(cout, bt.bottleneck)
    groups = bt.groups.resolve(m)
    return [
        Conv(cin, m, 1),
        Norm(m),
        Relu(),
        Conv(m, m, KERNEL, stride, groups),
        Norm(m),
        Relu(),
        Conv(m, cout, 1),
    ]


def mbconv_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    # MobileNetV2's inverted residual: expand t*in, depthwise 3x3, project, BN (as released).
    wide = bt.expansion * cin
    return [
        Conv(cin, wide, 1),
        Norm(wide),
        Relu(),
        Conv(wide, wide, KERNEL, stride, wide),
        Norm(wide),
        Relu(),
        Conv(wide, cout, 1),
        Norm(cout),
    ]


def teacher_basic_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    # torchvision's BasicBlock: 3x3 (carries the stride), BN, ReLU, 3x3, BN.
    return [Conv(cin, cout, KERNEL, stride), Norm(cout), Relu(), Conv(cout, cout, KERNEL), Norm(cout)]


def teacher_bottleneck_unit(bt: BlockType, cin: int, cout: int, stride: int) -> list[LayerSpec]:
    # torchvision's Bottleneck (ResNet v1.5, as timm's): 1x1 to N/b, 3x3 with the stride, 1x1 to N, a BN after each.
    m = bottleneck_width(cout, bt.bottleneck)
    return [
        Conv(cin, m, 1),
        Norm(m),
        Relu(),
        Conv(m, m, KERNEL, stride),
        Norm(m),
        Relu(),
        Conv(m, cout, 1),
        Norm(cout),
    ]


@dataclass(frozen=True)
class Family:
    name: str
    units: int  # 2 = basic wrapper, 1 = bottleneck and post-activation wrappers
    unit: Callable[[BlockType, int, int, int], list[LayerSpec]]
    notation: Callable[[BlockType], str]
    released: Callable[[BlockType], str | None]
    description: str
    post_activation: bool = False  # a pretrained network's own block (T, T(b)), not the zoo's wrapper

    @property
    def wrapper(self) -> str:
        if self.post_activation:
            return "post-activation"
        return "basic" if self.units == 2 else "bottleneck"


def _released_grouped(bt: BlockType) -> str:
    if bt.groups.relative:
        return "DConv" if bt.groups.value == 1 else f"DConvG{bt.groups.value}"
    return f"DConvA{bt.groups.value}"


def _released_bottleneck_grouped(bt: BlockType) -> str:
    g = bt.groups
    if g.relative:
        return f"DConvB{bt.bottleneck}" if g.value == 1 else f"G{g.value}B{bt.bottleneck}"
    return f"A{g.value}B{bt.bottleneck}"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("S", 2, standard_unit, lambda bt: "S", lambda bt: "Conv", "standard: two 3x3 convs"),
        Family(
            "G",
            2,
            grouped_unit,
            lambda bt: f"G({bt.groups.notation('N')})",
            _released_grouped,
            "each 3x3 conv -> grouped 3x3 (in->in) + BN + ReLU + 1x1 (in->out)",
        ),
        Family(
            "B",
            1,
            bottleneck_unit,
            lambda bt: f"B({bt.bottleneck})",
            lambda bt: f"ConvB{bt.bottleneck}",
            "bottleneck: 1x1 to N/b, 3x3, 1x1 back to N",
        ),
        Family(
            "BG",
            1,
            bottleneck_unit,
            lambda bt: f"BG({bt.bottleneck},{bt.groups.notation('M')})",
            _released_bottleneck_grouped,
            "bottleneck with the 3x3 split into groups at M = N/b channels",
        ),
        Family(
            "MBConv",
            1,
            mbconv_unit,
            lambda bt: f"MBConv({bt.expansion})",
            lambda bt: f"MBConv{bt.expansion}",
            "inverted residual: 1x1 expand by t, depthwise 3x3, 1x1 project, BN",
        ),
        Family(
            "T",
            1,
            teacher_basic_unit,
            lambda bt: "T",
            lambda bt: None,
            "a pretrained ResNet's own BasicBlock (torchvision / timm), kept with its weights",
            post_activation=True,
        ),
        Family(
            "TB",
            1,
            teacher_bottleneck_unit,
            lambda bt: f"T({bt.bottleneck})",
            lambda bt: None,
            "a pretrained ResNet's own Bottleneck (3x3 at N/b), kept with its weights",
            post_activation=True,
        ),
    ]
}


# --- parsing ------------------------------------------------------------------------------------

_INT = r"([1-9]\d*)"
_GROUP = r"([1-9]\d*|[NM](?:/[1-9]\d*)?)"


def _groups(text: str) -> Groups:
    if text[0] in "NM":
        return Groups(int(text[2:]) if "/" in text else 1, relative=True)
    return Groups(int(text))


# Each pattern maps a full-match regex to a constructor; paper notation first, then released aliases.
_PATTERNS: list[tuple[re.Pattern, Callable[[re.Match], BlockType]]] = [
    (re.compile(r"S|Conv"), lambda m: BlockType("S")),
    (re.compile(rf"G\({_GROUP}\)"), lambda m: BlockType("G", groups=_groups(m[1]))),
    (re.compile(rf"B\({_INT}\)"), lambda m: BlockType("B", bottleneck=int(m[1]))),
    (
        re.compile(rf"BG\({_INT},{_GROUP}\)"),
        lambda m: BlockType("BG", bottleneck=int(m[1]), groups=_groups(m[2])),
    ),
    (re.compile(rf"MBConv\(?{_INT}\)?"), lambda m: BlockType("MBConv", expansion=int(m[1]))),
    (re.compile(r"T"), lambda m: BlockType("T")),
    (re.compile(rf"T\({_INT}\)"), lambda m: BlockType("TB", bottleneck=int(m[1]))),
    (re.compile(rf"DConvA{_INT}"), lambda m: BlockType("G", groups=Groups(int(m[1])))),
    (re.compile(rf"DConvG{_INT}"), lambda m: BlockType("G", groups=Groups(int(m[1]), relative=True))),
    (re.compile(r"DConv"), lambda m: BlockType("G", groups=Groups(1, relative=True))),
    (re.compile(rf"ConvB{_INT}"), lambda m: BlockType("B", bottleneck=int(m[1]))),
    (
        re.compile(rf"A{_INT}B{_INT}"),
        lambda m: BlockType("BG", bottleneck=int(m[2]), groups=Groups(int(m[1]))),
    ),
    (
        re.compile(rf"G{_INT}B{_INT}"),
        lambda m: BlockType("BG", bottleneck=int(m[2]), groups=Groups(int(m[1]), relative=True)),
    ),
    (
        re.compile(rf"DConvB{_INT}"),
        lambda m: BlockType("BG", bottleneck=int(m[1]), groups=Groups(1, relative=True)),
    ),
]

ALLOWED_FORMS = (
    "S, G(g), G(N/k), G(N), B(b), BG(b,g), BG(b,M/k), BG(b,M), MBConv(t), T, T(b) "
    "or a released-code name (Conv, DConvA4, DConvG8, DConv, ConvB2, A4B2, G8B2, DConvB2, MBConv6)"
)


def parse_block(text: str) -> BlockType:
    """Parse paper notation or a released-code alias; an unknown name is a clear error."""
    if isinstance(text, BlockType):
        return text
    compact = re.sub(r"\s+", "", str(text))
    for pattern, make in _PATTERNS:
        match = pattern.fullmatch(compact)
        if match:
            return make(match)
    raise BlockswapError(f"unknown block type {text!r}; allowed: {ALLOWED_FORMS}")


# --- candidate sets -----------------------------------------------------------------------------

_PAPER_SET = (
    "S B(2) B(4) G(2) G(4) G(8) G(16) G(N/16) G(N/8) G(N/4) G(N/2) G(N) "
    "BG(2,2) BG(2,4) BG(2,8) BG(2,16) BG(2,M/16) BG(2,M/8) BG(2,M/4) BG(2,M/2) BG(2,M)"
)
# The released sampler's list: no BG(2,M), plus three BG(4,.) types its 162.2K network uses.
_RELEASED_SET = _PAPER_SET.replace(" BG(2,M)", "") + " BG(4,M/8) BG(4,M/4) BG(4,M/2)"

# For bottleneck ResNets (50/101/152, whose sections put out 256..2048 channels): the paper's B(b) and
# BG(b,g) families at the bottleneck factor of the original block (4) and cheaper ones, and MBConv(1).
# At these widths S and G cost several times the original bottleneck (S at 2048 channels: 75M
# parameters a block), and so do B(2), BG(2,g) with few groups and MBConv(t > 1).
_BOTTLENECK_SET = (
    "B(4) B(8) B(16) BG(2,M/8) BG(2,M) BG(4,2) BG(4,4) BG(4,8) BG(4,16) BG(4,M/16) BG(4,M/8) BG(4,M/4) "
    "BG(4,M) BG(8,2) BG(8,4) BG(8,M/8) BG(8,M/4) BG(8,M) MBConv(1)"
)

CANDIDATE_SETS: dict[str, tuple[BlockType, ...]] = {
    "paper": tuple(parse_block(n) for n in _PAPER_SET.split()),
    "released": tuple(parse_block(n) for n in _RELEASED_SET.split()),
    "bottleneck": tuple(parse_block(n) for n in _BOTTLENECK_SET.split()),
}


def candidate_set(name: str) -> tuple[BlockType, ...]:
    try:
        return CANDIDATE_SETS[name]
    except KeyError:
        raise BlockswapError(f"unknown candidate set {name!r}; allowed: {', '.join(CANDIDATE_SETS)}") from None


def valid_types(types: tuple[BlockType, ...], cin: int, cout: int, stride: int = 1) -> list[BlockType]:
    """The types of `types` that can be built at these widths (what the sampler may draw)."""
    return [t for t in types if t.problem_at(cin, cout, stride) is None]
