"""The pretrained ResNets a teacher may be (torchvision's or timm's), how a spec string names one,
and where its weights file is: what planning a workflow and checking a configuration need, without
torch. Reading, checking and running the weights is pretrained.py's.

    torchvision:resnet34                       torchvision's published file, from the torch hub cache
    torchvision:resnet50:/path/to/weights.pth  a state dict of torchvision's resnet50, any class count
    timm:resnet50:/path/to/model.safetensors   a state dict of timm's resnet50 (.pth, .bin, .safetensors)

Weights are never downloaded: runs are offline, so a missing file is one error saying where to put it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import BlockswapError
from .blocks import parse_block

if TYPE_CHECKING:
    from torch import nn

    from .architectures import Architecture

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation torchvision's and timm's ResNets are trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_SECTIONS = ("layer1", "layer2", "layer3", "layer4")
RESNET_STEM = ("conv1", "bn1")  # the stem's layers with weights (its ReLU and max-pool have none)
SAFETENSORS_SUFFIX = ".safetensors"
# Checkpoints that wrap the state dict (training scripts' files): the keys it may sit under.
WRAPPER_KEYS = ("state_dict", "model", "module")


@dataclass(frozen=True)
class PretrainedArch:
    source: str  # the library whose network this is (SOURCES)
    builder: str  # the library's name for it: torchvision.models.<builder>, timm.create_model(<builder>)
    arch: str  # the name our tables give it
    skeleton: str  # our student architecture with its macro-architecture (networks.models)
    block: str  # its own block in the zoo's notation: T (BasicBlock) or T(b) (Bottleneck, 3x3 at N/b)
    candidates: str  # the candidate set whose blocks fit its section widths (networks.blocks)
    weights: str | None = None  # torchvision's weights enum entry of the published ImageNet file
    url: str | None = None  # where torchvision publishes that file
    at_layers: tuple[str, ...] = RESNET_SECTIONS  # submodules whose outputs are the attention-transfer points
    at_post_activation: bool = True  # block: relu(bn(conv(...)) + identity), so the outputs are post-ReLU
    stem_layers: tuple[str, ...] = RESNET_STEM
    classifier: str = "fc"  # the final linear layer: its output count is the class count
    num_classes: int = 1000  # of the published ImageNet weights
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def spec_name(self) -> str:
        return f"{self.source}:{self.builder}"

    @property
    def file_name(self) -> str | None:
        # torch.hub caches a download under the URL's base name (torch.hub.load_state_dict_from_url).
        return Path(urlparse(self.url).path).name if self.url else None

    @property
    def hash_prefix(self) -> str | None:
        # torchvision names its files NAME-<first 8 hex digits of the file's sha256>.pth.
        return self.file_name.rsplit("-", 1)[1].split(".", 1)[0] if self.file_name else None


def _resnets(source: str, published: bool) -> dict[str, PretrainedArch]:
    """The ResNets both libraries build with torchvision's layout and parameter names."""
    rows = [
        # builder, our name, skeleton, block, candidates, torchvision's weights enum, file
        ("resnet18", "resnet-18", "resnet-18", "T", "paper", "ResNet18_Weights", "resnet18-f37072fd.pth"),
        ("resnet34", "resnet-34", "resnet-34", "T", "paper", "ResNet34_Weights", "resnet34-b627a593.pth"),
        ("resnet50", "resnet-50", "resnet-50", "T(4)", "bottleneck", "ResNet50_Weights", "resnet50-0676ba61.pth"),
        ("resnet101", "resnet-101", "resnet-101", "T(4)", "bottleneck", "ResNet101_Weights", "resnet101-63fe2227.pth"),
        ("resnet152", "resnet-152", "resnet-152", "T(4)", "bottleneck", "ResNet152_Weights", "resnet152-394f9c45.pth"),
        (
            "wide_resnet50_2",
            "wide-resnet-50-2",
            "resnet-50",
            "T(2)",
            "bottleneck",
            "Wide_ResNet50_2_Weights",
            "wide_resnet50_2-95faca4d.pth",
        ),
        (
            "wide_resnet101_2",
            "wide-resnet-101-2",
            "resnet-101",
            "T(2)",
            "bottleneck",
            "Wide_ResNet101_2_Weights",
            "wide_resnet101_2-32ee1156.pth",
        ),
    ]
    return {
        builder: PretrainedArch(
            source,
            builder,
            name,
            skeleton,
            block,
            candidates,
            f"{enum}.IMAGENET1K_V1" if published else None,
            f"https://download.pytorch.org/models/{file}" if published else None,
        )
        for builder, name, skeleton, block, candidates, enum, file in rows
    }


def _build_torchvision(builder: str, num_classes: int) -> nn.Module:
    import torchvision  # 1.5 s to import: only when a torchvision teacher is really built

    return getattr(torchvision.models, builder)(weights=None, num_classes=num_classes)


def _build_timm(builder: str, num_classes: int) -> nn.Module:
    try:
        import timm  # optional (the timm extra): only for a timm teacher
    except ImportError:
        raise BlockswapError("timm is not installed: pip install -e '.[timm]' (or pip install timm)") from None
    return timm.create_model(builder, pretrained=False, num_classes=num_classes)


@dataclass(frozen=True)
class Source:
    name: str
    archs: dict[str, PretrainedArch]
    build: Callable[[str, int], nn.Module]  # (builder, classes) -> the network, randomly initialised
    hub_cache: bool  # its published files may sit in the torch hub cache (spec without a path)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source("torchvision", _resnets("torchvision", published=True), _build_torchvision, hub_cache=True),
        Source("timm", _resnets("timm", published=False), _build_timm, hub_cache=False),
    ]
}
ARCHS = SOURCES["torchvision"].archs  # torchvision's, with their published ImageNet files
SPEC_FORMS = "SOURCE:NAME:/path/to/weights (SOURCE torchvision or timm), or torchvision:NAME for its published file"


def supported() -> str:
    """Every teacher name, for the errors that list what is allowed."""
    return ", ".join(a.spec_name for s in SOURCES.values() for a in s.archs.values())


def is_pretrained_spec(spec) -> bool:
    """True for any string with a source's prefix (`torchvision:`, `timm:`): the prefix claims the
    name, so an unsupported architecture is an error naming the supported ones, not a missing folder."""
    return isinstance(spec, str) and spec.partition(":")[0] in SOURCES and ":" in spec


def parse_spec(spec: str) -> tuple[PretrainedArch, Path | None]:
    """The architecture and the explicit weights file (None: the torch hub cache) of a spec."""
    if not is_pretrained_spec(spec):
        raise BlockswapError(f"{spec!r} is not a pretrained teacher; write {SPEC_FORMS}")
    source_name, _, rest = spec.partition(":")
    source = SOURCES[source_name]
    # Split at the first ':' after the name only: the path may itself contain ':'.
    name, sep, path = rest.partition(":")
    if name not in source.archs:
        raise BlockswapError(
            f"unknown {source.name} teacher {name!r} in {spec!r}; supported: {', '.join(source.archs)} "
            f"(all: {supported()})"
        )
    if sep and not path:
        raise BlockswapError(f"{spec!r} names no weights file after the last ':'; write {SPEC_FORMS}")
    if not path and not source.hub_cache:
        raise BlockswapError(
            f"{spec!r} names no weights file: {source.name} teachers are read from a file, "
            f"{source.name}:{name}:/path/to/weights (.pth, .bin or {SAFETENSORS_SUFFIX})"
        )
    return source.archs[name], (Path(path).expanduser().resolve() if path else None)


def torch_hub_dir() -> Path:
    """torch.hub's folder, `torch.hub.get_dir()`, without importing torch where it is not loaded:
    $TORCH_HOME/hub, with TORCH_HOME defaulting to $XDG_CACHE_HOME/torch (~/.cache/torch)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def hub_cache_path(arch: PretrainedArch) -> Path:
    """Where torchvision itself would cache the file (honours $TORCH_HOME, as torch.hub does)."""
    return torch_hub_dir() / "checkpoints" / arch.file_name


def weights_path(spec: str) -> Path:
    """The weights file a spec loads, which must exist; nothing is ever downloaded."""
    arch, path = parse_spec(spec)
    if path is None:
        where = hub_cache_path(arch)
    else:
        where = path
    if where.is_file():
        return where.resolve()
    problem = "is a folder, not a file" if where.exists() else "does not exist"
    if arch.url is None:
        raise BlockswapError(f"weights of {spec} not found: {where} {problem} (runs are offline: nothing is fetched)")
    cache = hub_cache_path(arch)
    elsewhere = (
        f"or put {arch.file_name} at {cache} and write {arch.spec_name}"
        if path is not None
        else f"or write {arch.spec_name}:/path/to/{arch.file_name}"
    )
    raise BlockswapError(
        f"weights of {spec} not found: {where} {problem}; put {arch.file_name} ({arch.weights}) there "
        f"({elsewhere}); download it from {arch.url} (runs are offline: nothing is fetched)"
    )


def keep_slots(
    text: str | None, arch: PretrainedArch, skeleton: Architecture, option: str = "--keep"
) -> tuple[int, ...]:
    """The student's block positions a student keeps as the teacher's own, named by the teacher's
    module names: a section (layer1) or one block (layer3.2), comma-separated."""
    if not text:
        return ()
    sections = {
        name: [i for i, s in enumerate(skeleton.slots) if s.stage == n] for n, name in enumerate(arch.at_layers)
    }
    allowed = ", ".join(f"{name} (.0-.{len(slots) - 1})" for name, slots in sections.items())
    kept: list[int] = []
    for item in str(text).split(","):
        name, _, index = item.strip().partition(".")
        if name not in sections or (index and not (index.isdigit() and int(index) < len(sections[name]))):
            raise BlockswapError(f"{option} {item.strip()!r} is not a block of {arch.builder}; allowed: {allowed}")
        kept += sections[name] if not index else [sections[name][int(index)]]
    return tuple(sorted(set(kept)))


def kept_blocks(text: str | None, spec: str | None, skeleton: Architecture, option: str = "--keep") -> dict:
    """{slot: the teacher's own block type} for the blocks `text` names (keep_slots) of the teacher
    `spec`, whose skeleton must be `skeleton`; {} when nothing is kept."""
    if not text:
        return {}
    if spec is None:
        raise BlockswapError(f"{option} names blocks of a pretrained teacher, and no pretrained teacher is given")
    arch, _ = parse_spec(spec)
    if arch.skeleton != skeleton.name:
        raise BlockswapError(f"{option}: {arch.spec_name}'s skeleton is {arch.skeleton}, not {skeleton.name}")
    block = parse_block(arch.block)
    return {slot: block for slot in keep_slots(text, arch, skeleton, option)}
