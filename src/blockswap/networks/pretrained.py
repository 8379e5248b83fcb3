"""Pretrained ResNets (torchvision's or timm's) as frozen attention-transfer teachers, read from a
local weights file with whatever classes they were fine-tuned on.

The paper distils its ImageNet students (docs/paper.md s.8, Table 3) from torchvision's pretrained
ResNet-34: its teacher row, 26.73 / 8.57 % top-1 / top-5 error, is torchvision's published figure
for IMAGENET1K_V1 to within 0.05. A practitioner's teacher is the same kind of network fine-tuned
on their own classes. A teacher is named by a spec string:

    torchvision:resnet34                       torchvision's published file, from the torch hub cache
    torchvision:resnet50:/path/to/weights.pth  a state dict of torchvision's resnet50, any class count
    timm:resnet50:/path/to/model.safetensors   a state dict of timm's resnet50 (.pth, .bin, .safetensors)

Weights are never downloaded: runs are offline, so a missing file is one error saying where to put
it. The class count is the checkpoint's (its `fc` rows). Attention transfer uses the four section
outputs (layer1..layer4: 56 / 28 / 14 / 7 px at 224), the same points as our own ResNet students'
stages. These ResNets are post-activation (each block ends with a ReLU after its residual add), so
these outputs are post-ReLU; the teacher says so by returning them as `PostActivationStages`, and the
distillation compares the ReLU of a pre-activation student's residual sums with them, as
attention-transfer's ImageNet code compares post-ReLU group outputs on both sides (bench/at_points.py
measures the choice).

Each teacher has a student skeleton of ours with its macro-architecture (`skeleton`: the same stem,
section widths, strides and block counts) and its own block in the zoo's notation (`block`: T for a
BasicBlock, T(b) for a Bottleneck); `inherit_teacher_weights` copies the teacher's stem, and every
block a student keeps as the teacher's, into the student.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from ..errors import BlockswapError
from ..provenance import file_digest
from .models import Intermediates, Network, PostActivationStages

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


def hub_cache_path(arch: PretrainedArch) -> Path:
    """Where torchvision itself would cache the file (honours $TORCH_HOME, as torch.hub does)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / arch.file_name


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


def _build(arch: PretrainedArch, num_classes: int) -> nn.Module:
    # pretrained=False / weights=None: neither library downloads. On the meta device nothing is
    # allocated or randomly initialised; the loaded state dict then supplies every tensor.
    with torch.device("meta"):
        return SOURCES[arch.source].build(arch.builder, num_classes)


def _unreadable(path: Path, arch: PretrainedArch, exc: Exception) -> BlockswapError:
    # torch's own message for a weights_only failure suggests weights_only=False, which would run
    # arbitrary pickled code: only the exception type is passed on.
    again = (
        f"download it again from {arch.url}" if arch.url else "save it again with torch.save(model.state_dict(), FILE)"
    )
    return BlockswapError(
        f"{path} cannot be read as a PyTorch state dict ({type(exc).__name__}; loaded with weights_only=True); "
        f"it may be truncated or corrupt, or pickle objects besides tensors (a training script's checkpoint): {again}"
    )


def _is_state_dict(value) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())
    )


def _read_state_dict(path: Path, arch: PretrainedArch) -> dict:
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import load_file  # timm's format on the Hugging Face hub (a timm dependency)

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise BlockswapError(
            f"{path} is a safetensors file and safetensors is not installed: pip install safetensors"
        ) from None
    except Exception as exc:  # truncated, not a torch file, or pickled objects besides tensors
        raise _unreadable(path, arch, exc) from None
    if isinstance(state, dict) and not _is_state_dict(state):
        # A training script's checkpoint of plain values (epoch, metric) with the weights under one key.
        wrapped = [state[k] for k in WRAPPER_KEYS if _is_state_dict(state.get(k))]
        state = wrapped[0] if wrapped else state
    if not _is_state_dict(state):
        raise BlockswapError(
            f"{path} holds a {type(state).__name__}, not a state dict (a dict of name -> tensor, as "
            "torch.save(model.state_dict(), FILE) writes)"
        )
    prefix = "module."  # saved from nn.DataParallel / DistributedDataParallel
    if all(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def checkpoint_classes(state: dict, arch: PretrainedArch) -> int | None:
    """The class count of a state dict: the rows of its classifier's weight (None without one)."""
    weight = state.get(f"{arch.classifier}.weight")
    return int(weight.shape[0]) if torch.is_tensor(weight) and weight.ndim == 2 else None


def _mismatch(state: dict, expected: dict) -> str | None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        return f"keys {'; '.join(parts)}"
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            return f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
    return None


def _look_alikes(state: dict, arch: PretrainedArch, classes: int) -> list[str]:
    """The other supported networks this state dict does fit (to name in the error)."""
    names = []
    for other in SOURCES[arch.source].archs.values():
        if other is not arch and _mismatch(state, _build(other, classes).state_dict()) is None:
            names.append(other.spec_name)
    return names


def _check_state_dict(state: dict, expected: dict, path: Path, arch: PretrainedArch, classes: int) -> None:
    problem = _mismatch(state, expected)
    if problem is None:
        return
    alike = _look_alikes(state, arch, classes)
    hint = f"; it fits {' and '.join(alike)}" if alike else f"; supported: {supported()}"
    raise BlockswapError(f"{path} is not a {arch.source} {arch.builder} state dict: {problem}{hint}")


def read_teacher(spec: str) -> tuple[PretrainedArch, Path, dict, int]:
    """The architecture, weights file, checked state dict and class count of a teacher spec."""
    arch, _ = parse_spec(spec)
    path = weights_path(spec)
    state = _read_state_dict(path, arch)
    classes = checkpoint_classes(state, arch)
    if classes is None or classes < 1:
        alike = _look_alikes(state, arch, 1000) if classes is None else []
        raise BlockswapError(
            f"{path} is not a {arch.source} {arch.builder} state dict: it has no {arch.classifier}.weight matrix"
            + (f"; it fits {' and '.join(alike)}" if alike else f"; supported: {supported()}")
        )
    _check_state_dict(state, _build(arch, classes).state_dict(), path, arch, classes)
    return arch, path, state, classes


class PretrainedTeacher(nn.Module):
    """A frozen torchvision or timm network with our models' `forward_intermediates` interface."""

    def __init__(
        self, net: nn.Module, arch: PretrainedArch, spec: str, weights_file: Path, input_size: tuple[int, int]
    ):
        super().__init__()
        self.net = net
        self.arch = arch
        self.spec = spec
        self.weights_file = weights_file
        self.input_size = input_size
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PretrainedTeacher:
        # A teacher is frozen in eval mode (docs/paper.md s.4): a train-mode pass would switch BN to
        # batch statistics and overwrite the pretrained running statistics.
        return super().train(False)

    def forward_intermediates(self, x: torch.Tensor) -> Intermediates:
        # Forward hooks on the section modules, around the library's own forward: the logits are
        # exactly its own, whatever its forward does between the sections.
        captured = {}
        modules = dict(self.net.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda m, i, out, name=name: captured.__setitem__(name, out))
            for name in self.arch.at_layers
        ]
        try:
            logits = self.net(x)
        finally:
            for h in handles:
                h.remove()
        stages = [captured[name] for name in self.arch.at_layers]
        if self.arch.at_post_activation:
            stages = PostActivationStages(stages)
        # No probes: Fisher potential is never measured on a teacher.
        return Intermediates(logits, stages, [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _check_input_size(input_size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in input_size)
    except (TypeError, ValueError):
        raise BlockswapError(f"input size must be (height, width), got {input_size!r}") from None
    if h < 1 or w < 1:
        raise BlockswapError(f"input size must be positive, got {(h, w)}")
    return h, w


def load_pretrained_teacher(spec: str, num_classes: int, input_size: Sequence[int]) -> PretrainedTeacher:
    """The frozen, eval-mode teacher of `spec`, its weights read (weights_only, or safetensors) from
    the spec's file or the torch hub cache; `num_classes` must be the checkpoint's class count."""
    parse_spec(spec)
    size = _check_input_size(input_size)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise BlockswapError(f"num_classes must be a positive whole number, got {num_classes!r}")
    arch, path, state, classes = read_teacher(spec)
    if classes != num_classes:
        raise BlockswapError(
            f"teacher {spec} has {classes} classes but the dataset has {num_classes}; a teacher distils students "
            f"of its own classes: give data with its {classes} classes (a folder dataset: one class folder per "
            "output, in the order of the teacher's outputs)"
        )
    net = _build(arch, classes)
    expected = net.state_dict()
    # Match the built network's dtypes (float32 weights, int64 BN counters): a half-precision
    # copy of the file would otherwise give a half-precision teacher.
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    net.load_state_dict(state, strict=True, assign=True)
    return PretrainedTeacher(net, arch, spec, path, size)


def _measure(arch: PretrainedArch, input_size: tuple[int, int], num_classes: int) -> tuple[int, int]:
    """Params (every parameter: the teacher's are frozen, so not `requires_grad`) and MACs of one
    image, counted by PyTorch's FlopCounterMode on the meta device (shapes only, no arithmetic)."""
    net = _build(arch, num_classes).eval()  # eval: BN in train mode rejects one 1x1 image
    params = sum(p.numel() for p in net.parameters())
    from torch.utils.flop_counter import FlopCounterMode  # pulls in triton: only when measuring

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, *input_size, device="meta"))
    # FlopCounterMode counts 2 flops per multiply-accumulate of conv and matmul layers only.
    return params, counter.get_total_flops() // 2


def _published(arch: PretrainedArch) -> dict:
    if arch.weights is None:
        return {"published_top1_error": None, "published_top5_error": None}
    import torchvision  # 1.5 s to import: only when a torchvision teacher is described

    metrics = torchvision.models.get_weight(arch.weights).meta["_metrics"]["ImageNet-1K"]
    return {
        "published_top1_error": round(100.0 - metrics["acc@1"], 3),
        "published_top5_error": round(100.0 - metrics["acc@5"], 3),
    }


def describe(spec: str, input_size: Sequence[int] = (224, 224)) -> dict:
    """What to record about a pretrained teacher: architecture, the weights file used (absolute
    path, sha256, whether it is torchvision's published file), class count, params and MACs at
    `input_size`, its student skeleton and the normalisation its library trains with."""
    parse_spec(spec)
    size = _check_input_size(input_size)
    arch, path, _, classes = read_teacher(spec)
    sha256 = file_digest(path)
    params, macs = _measure(arch, size, classes)
    return {
        "spec": spec,
        "arch": arch.arch,
        "source": arch.source,
        "torchvision_arch": arch.builder,
        "skeleton": arch.skeleton,
        "teacher_block": arch.block,
        "num_classes": classes,
        "weights": arch.weights,
        "weights_url": arch.url,
        "weights_file": str(path),
        "weights_sha256": sha256,
        "official_weights": bool(arch.hash_prefix) and sha256.startswith(arch.hash_prefix),
        "params": params,
        "macs": macs,
        "input_size": list(size),
        "at_points": "post-relu" if arch.at_post_activation else "pre-relu",
        "mean": list(arch.mean),
        "std": list(arch.std),
        **_published(arch),
    }


# --- students that start from the teacher -------------------------------------------------------


def _layers(module: nn.Module) -> list[nn.Module]:
    """The layers with weights of `module`, in order: the same sequence in a torchvision / timm block
    and in the zoo's T block (conv, BN, ..., then the shortcut's conv and BN)."""
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def _copy(sources: list[nn.Module], targets: list[nn.Module], what: str) -> None:
    shapes = [[tuple(t.shape) for t in m.state_dict().values()] for m in sources]
    wanted = [[tuple(t.shape) for t in m.state_dict().values()] for m in targets]
    if shapes != wanted:
        raise BlockswapError(f"{what}: the teacher's layers do not fit the student's there")
    with torch.no_grad():
        for source, target in zip(sources, targets):
            target.load_state_dict(source.state_dict())


def teacher_block_names(arch: PretrainedArch, student: Network) -> dict[int, str]:
    """The teacher's module name of every block position of the student (layer3.2: section 3's third)."""
    names, seen = {}, {}
    for i, slot in enumerate(student.spec.arch.slots):
        index = seen.get(slot.stage, 0)
        names[i] = f"{arch.at_layers[slot.stage]}.{index}"
        seen[slot.stage] = index + 1
    return names


def inherit_teacher_weights(student: Network, teacher: PretrainedTeacher) -> list[str]:
    """Copy the teacher's stem and every block the student keeps as the teacher's own (T, T(b)) into
    the student; returns the teacher's modules copied. The student must have the teacher's skeleton."""
    arch = teacher.arch
    skeleton = student.spec.arch.name
    if skeleton != arch.skeleton:
        raise BlockswapError(
            f"the student is a {skeleton}; {arch.spec_name}'s weights fit a student of its own "
            f"skeleton, {arch.skeleton}"
        )
    modules = dict(teacher.net.named_modules())
    _copy([modules[name] for name in arch.stem_layers], _layers(student.stem), "the stem")
    copied = list(arch.stem_layers)
    names = teacher_block_names(arch, student)
    for i, block_type in enumerate(student.spec.genotype):
        if not block_type.spec.post_activation:
            continue
        if block_type.name != arch.block:
            raise BlockswapError(
                f"block {i} of the student is {block_type.name}, but {arch.spec_name}'s own blocks are {arch.block}"
            )
        _copy(_layers(modules[names[i]]), _layers(student.blocks[i]), f"block {i} ({names[i]})")
        copied.append(names[i])
    return copied
