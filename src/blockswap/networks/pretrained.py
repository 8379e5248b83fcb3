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

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import BlockswapError
from ..provenance import file_digest
from .models import Intermediates, Network, PostActivationStages
from .teacher_specs import (
    SAFETENSORS_SUFFIX,
    SOURCES,
    WRAPPER_KEYS,
    PretrainedArch,
    parse_spec,
    supported,
    weights_path,
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
