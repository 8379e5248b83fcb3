"""torchvision's pretrained ImageNet networks as frozen attention-transfer teachers.

The paper distils its ImageNet students (docs/paper.md s.8, Table 3) from torchvision's pretrained
ResNet-34: its teacher row, 26.73 / 8.57 % top-1 / top-5 error, is torchvision's published figure
for IMAGENET1K_V1 to within 0.05. A teacher is named by a spec string:

    torchvision:resnet34                       weights from the torch hub cache
    torchvision:resnet34:/path/to/weights.pth  weights from that file

Weights are never downloaded: runs are offline, so a missing file is one error saying where to put
it and where to get it. Attention transfer uses the four section outputs (layer1..layer4: 56 / 28
/ 14 / 7 px at 224), the same points as our own `resnet-34` student's stages. torchvision's ResNets
are post-activation (each BasicBlock ends with a ReLU after its residual add), so these outputs are
post-ReLU; the teacher says so by returning them as `PostActivationStages`, and the distillation
compares the ReLU of a pre-activation student's residual sums with them, as attention-transfer's
ImageNet code compares post-ReLU group outputs on both sides (bench/at_points.py measures the choice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from ..errors import BlockswapError
from ..provenance import file_digest
from .models import Intermediates, PostActivationStages

SPEC_PREFIX = "torchvision:"
SPEC_FORMS = "torchvision:NAME or torchvision:NAME:/path/to/weights.pth"


@dataclass(frozen=True)
class TorchvisionArch:
    builder: str  # torchvision.models.<builder>
    arch: str  # the paper's / our tables' name for it
    weights: str  # torchvision weights enum entry the file belongs to
    url: str  # where torchvision publishes the file (torchvision's weights enum)
    at_layers: tuple[str, ...]  # submodules whose outputs are the attention-transfer points
    at_post_activation: bool  # whether those outputs are taken after a ReLU
    classifier: str  # the final linear layer: its output count is the class count
    num_classes: int = 1000  # ImageNet-1k

    @property
    def file_name(self) -> str:
        # torch.hub caches a download under the URL's base name (torch.hub.load_state_dict_from_url).
        return Path(urlparse(self.url).path).name

    @property
    def hash_prefix(self) -> str:
        # torchvision names its files NAME-<first 8 hex digits of the file's sha256>.pth.
        return self.file_name.rsplit("-", 1)[1].split(".", 1)[0]


RESNET_SECTIONS = ("layer1", "layer2", "layer3", "layer4")
ARCHS: dict[str, TorchvisionArch] = {
    a.builder: a
    for a in [
        TorchvisionArch(
            "resnet18",
            "resnet-18",
            "ResNet18_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            RESNET_SECTIONS,
            True,  # BasicBlock: relu(bn2(conv2(...)) + identity)
            "fc",
        ),
        TorchvisionArch(
            "resnet34",
            "resnet-34",
            "ResNet34_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/resnet34-b627a593.pth",
            RESNET_SECTIONS,
            True,  # BasicBlock: relu(bn2(conv2(...)) + identity)
            "fc",
        ),
    ]
}


def is_pretrained_spec(spec) -> bool:
    """True for any string with the `torchvision:` prefix: the prefix claims the name, so an
    unsupported architecture is an error naming the supported ones, not a missing-folder error."""
    return isinstance(spec, str) and spec.startswith(SPEC_PREFIX)


def parse_spec(spec: str) -> tuple[TorchvisionArch, Path | None]:
    """The architecture and the explicit weights file (None: the torch hub cache) of a spec."""
    if not is_pretrained_spec(spec):
        raise BlockswapError(f"{spec!r} is not a pretrained teacher; write {SPEC_FORMS}")
    # Split at the first ':' after the name only: the path may itself contain ':'.
    name, sep, path = spec[len(SPEC_PREFIX) :].partition(":")
    if name not in ARCHS:
        raise BlockswapError(
            f"unknown torchvision teacher {name!r} in {spec!r}; supported: {', '.join(ARCHS)} ({SPEC_FORMS})"
        )
    if sep and not path:
        raise BlockswapError(f"{spec!r} names no weights file after the last ':'; write {SPEC_FORMS}")
    return ARCHS[name], (Path(path).expanduser().resolve() if path else None)


def hub_cache_path(arch: TorchvisionArch) -> Path:
    """Where torchvision itself would cache the file (honours $TORCH_HOME, as torch.hub does)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / arch.file_name


def weights_path(spec: str) -> Path:
    """The weights file a spec loads, which must exist; nothing is ever downloaded."""
    arch, path = parse_spec(spec)
    cache = hub_cache_path(arch)
    where = path if path is not None else cache
    if where.is_file():
        return where.resolve()
    problem = "is a folder, not a file" if where.exists() else "does not exist"
    elsewhere = (
        f"or put {arch.file_name} at {cache} and write torchvision:{arch.builder}"
        if path is not None
        else f"or write torchvision:{arch.builder}:/path/to/{arch.file_name}"
    )
    raise BlockswapError(
        f"weights of {spec} not found: {where} {problem}; put {arch.file_name} ({arch.weights}) there "
        f"({elsewhere}); download it from {arch.url} (runs are offline: nothing is fetched)"
    )


def _build(arch: TorchvisionArch, num_classes: int) -> nn.Module:
    # weights=None: torchvision never downloads. On the meta device nothing is allocated or
    # randomly initialised; the loaded state dict then supplies every tensor.
    with torch.device("meta"):
        import torchvision  # 1.5 s to import: only when a torchvision teacher is really built

        return getattr(torchvision.models, arch.builder)(weights=None, num_classes=num_classes)


def _read_state_dict(path: Path, arch: TorchvisionArch) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or pickled objects besides tensors
        # torch's own message for a weights_only failure suggests weights_only=False, which would
        # run arbitrary pickled code: only the exception type is passed on.
        raise BlockswapError(
            f"{path} cannot be read as a PyTorch state dict ({type(exc).__name__}; loaded with weights_only=True); "
            f"it may be truncated or corrupt: download it again from {arch.url}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise BlockswapError(
            f"{path} holds a {type(state).__name__}, not a state dict (a dict of name -> tensor, as torchvision saves)"
        )
    return state


def _check_state_dict(state: dict, expected: dict, path: Path, arch: TorchvisionArch) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise BlockswapError(f"{path} is not a torchvision {arch.builder} state dict: keys {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise BlockswapError(
                f"{path} is not a torchvision {arch.builder} state dict: {k} has shape {tuple(state[k].shape)}, "
                f"expected {tuple(v.shape)}"
            )


class TorchvisionTeacher(nn.Module):
    """A frozen torchvision network with our models' `forward_intermediates` interface."""

    def __init__(
        self, net: nn.Module, arch: TorchvisionArch, spec: str, weights_file: Path, input_size: tuple[int, int]
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

    def train(self, mode: bool = True) -> TorchvisionTeacher:
        # A teacher is frozen in eval mode (docs/paper.md s.4): a train-mode pass would switch BN to
        # batch statistics and overwrite the pretrained running statistics.
        return super().train(False)

    def forward_intermediates(self, x: torch.Tensor) -> Intermediates:
        # Forward hooks on the section modules, around torchvision's own forward: the logits are
        # exactly torchvision's, whatever its forward does between the sections.
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


def load_pretrained_teacher(spec: str, num_classes: int, input_size: Sequence[int]) -> TorchvisionTeacher:
    """The frozen, eval-mode torchvision teacher of `spec`, its weights read (weights_only) from the
    spec's file or the torch hub cache; `num_classes` must be the checkpoint's class count."""
    arch, _ = parse_spec(spec)
    size = _check_input_size(input_size)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise BlockswapError(f"num_classes must be a positive whole number, got {num_classes!r}")
    path = weights_path(spec)
    state = _read_state_dict(path, arch)
    classifier = f"{arch.classifier}.weight"
    if classifier in state and state[classifier].ndim == 2 and state[classifier].shape[0] != num_classes:
        raise BlockswapError(
            f"teacher {spec} has {state[classifier].shape[0]} classes but the dataset has {num_classes}; "
            "a torchvision ImageNet teacher can only distil students on ImageNet"
        )
    net = _build(arch, num_classes)
    expected = net.state_dict()
    _check_state_dict(state, expected, path, arch)
    # Match the built network's dtypes (float32 weights, int64 BN counters): a half-precision
    # copy of the file would otherwise give a half-precision teacher.
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    net.load_state_dict(state, strict=True, assign=True)
    return TorchvisionTeacher(net, arch, spec, path, size)


def _measure(arch: TorchvisionArch, input_size: tuple[int, int]) -> tuple[int, int]:
    """Params (every parameter: the teacher's are frozen, so not `requires_grad`) and MACs of one
    image, counted by PyTorch's FlopCounterMode on the meta device (shapes only, no arithmetic)."""
    net = _build(arch, arch.num_classes).eval()  # eval: BN in train mode rejects one 1x1 image
    params = sum(p.numel() for p in net.parameters())
    from torch.utils.flop_counter import FlopCounterMode  # pulls in triton: only when measuring

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, *input_size, device="meta"))
    # FlopCounterMode counts 2 flops per multiply-accumulate of conv and matmul layers only.
    return params, counter.get_total_flops() // 2


def describe(spec: str, input_size: Sequence[int] = (224, 224)) -> dict:
    """What to record about a pretrained teacher: architecture, the weights file used (absolute
    path, sha256, whether it is torchvision's published file), params and MACs at `input_size`."""
    arch, _ = parse_spec(spec)
    size = _check_input_size(input_size)
    path = weights_path(spec)
    sha256 = file_digest(path)
    params, macs = _measure(arch, size)
    import torchvision  # 1.5 s to import: only when a torchvision teacher is described

    published = torchvision.models.get_weight(arch.weights).meta["_metrics"]["ImageNet-1K"]
    return {
        "spec": spec,
        "arch": arch.arch,
        "torchvision_arch": arch.builder,
        "weights": arch.weights,
        "weights_url": arch.url,
        "weights_file": str(path),
        "weights_sha256": sha256,
        "official_weights": sha256.startswith(arch.hash_prefix),
        "params": params,
        "macs": macs,
        "input_size": list(size),
        "at_points": "post-relu" if arch.at_post_activation else "pre-relu",
        "published_top1_error": round(100.0 - published["acc@1"], 3),
        "published_top5_error": round(100.0 - published["acc@5"], 3),
    }
