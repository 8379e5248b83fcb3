"""Deployable students: ONNX or TorchScript files holding only what inference needs.

A trained `Network` also returns stage outputs (attention transfer) and per-block probes (Fisher
potential); `Deployable` keeps its stem, blocks, head and classifier and returns the logits alone,
in eval mode (BatchNorm uses its running statistics). Every export is read back and its outputs on
a seeded batch are compared with PyTorch's before the file is kept.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import BlockswapError
from ..networks.models import Network
from ..provenance import atomic_write, provenance, seal
from ..training.checkpoint import load_model
from .settings import Setting
from .timing import MIN_RUNS, MIN_WARMUP, check_protocol, cpu_threads, measure_model, median_seconds

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
CHECK_BATCH = 8  # images in the batch an export is checked on
# Largest |export - PyTorch| accepted on a logit (float32 kernels differ in summation order).
TOLERANCE = 1e-4


class Deployable(nn.Module):
    """A network's inference path: logits only, no training-only outputs."""

    def __init__(self, net: Network):
        super().__init__()
        self.stem, self.blocks, self.head, self.classifier = net.stem, net.blocks, net.head, net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)[0]
        return self.classifier(self.head(x))


def deployable(net: Network) -> Deployable:
    return Deployable(net).eval()


def example_batch(input_size, batch: int = CHECK_BATCH, seed: int = 0, in_channels: int = 3) -> torch.Tensor:
    return torch.randn(batch, in_channels, *input_size, generator=torch.Generator().manual_seed(seed))


def to_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """ONNX bytes of `model` (TorchScript-based exporter, opset 17), the batch dimension dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buffer.getvalue()


def to_torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notes
        torch.jit.save(torch.jit.trace(model, example), buffer)
    return buffer.getvalue()


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def onnx_session(data: bytes, threads: int = 1):
    try:
        import onnxruntime  # optional (the deploy extra): only for an ONNX check
    except ImportError:
        raise BlockswapError("ONNX Runtime is not installed: pip install -e '.[deploy]' (or onnxruntime)") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_export(data: bytes, fmt: str, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
    """Outputs of an export (read back from its bytes) on `x`: ONNX through ONNX Runtime, TorchScript
    through torch.jit.load."""
    if fmt == "onnx":
        return torch.from_numpy(onnx_session(data, threads).run(["logits"], {"images": x.numpy()})[0])
    with torch.inference_mode():
        return load_torchscript(data)(x)


def export_model(net: Network, fmt: str, input_size, seed: int = 0) -> tuple[bytes, float]:
    """The export's bytes and the largest |difference| of its logits from PyTorch's on a seeded batch;
    a difference above TOLERANCE is an error (the file would not be the trained network)."""
    if fmt not in FORMATS:
        raise BlockswapError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model = deployable(net).cpu()
    x = example_batch(input_size, seed=seed)
    data = to_onnx(model, x) if fmt == "onnx" else to_torchscript(model, x)
    with torch.inference_mode():
        expected = model(x)
    got = run_export(data, fmt, x)
    if got.shape != expected.shape:
        raise BlockswapError(f"the {fmt} export gives outputs of shape {tuple(got.shape)}, not {tuple(expected.shape)}")
    difference = float((got - expected).abs().max())
    if not difference <= TOLERANCE:
        raise BlockswapError(f"the {fmt} export differs from the PyTorch model by {difference:.3g} (> {TOLERANCE})")
    return data, difference


def export_latency(
    data: bytes, fmt: str, input_size, setting: Setting, warmup: int = MIN_WARMUP, runs: int = MIN_RUNS
) -> float:
    """Median seconds of one call of the export on the CPU, timed as `measure_model` times PyTorch."""
    check_protocol(warmup, runs)
    if setting.device != "cpu":
        raise BlockswapError(f"export latency is measured on the CPU; got setting {setting.key}")
    x = example_batch(input_size, batch=setting.batch)
    if fmt == "onnx":
        session = onnx_session(data, setting.threads)
        feed = {"images": x.numpy()}
        return median_seconds(lambda: session.run(["logits"], feed), torch.device("cpu"), warmup, runs)
    loaded = load_torchscript(data)
    with cpu_threads(setting.threads), torch.inference_mode():
        return median_seconds(lambda: loaded(x), torch.device("cpu"), warmup, runs)


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path,
    setting: str | None = "cpu/t1/b1",
    warmup: int = MIN_WARMUP,
    runs: int = MIN_RUNS,
    measure: bool = True,
) -> dict:
    """Export a trained network (a training folder or model.pt) to `out`, sealed, its check and (with
    `measure`) its latency beside PyTorch's recorded in the sidecar; returns that record."""
    start = time.perf_counter()
    net, record = load_model(run)
    size = tuple(record["input_size"])
    data, difference = export_model(net, fmt, size)
    result = {
        "format": fmt,
        "run": str(run),
        "arch": record["arch"],
        "genotype": record["genotype"],
        "input_size": list(size),
        "num_classes": record["num_classes"],
        "inputs": "images (N, 3, H, W), normalised as in training",
        "outputs": "logits (N, classes)",
        "max_abs_difference": difference,
        "check_batch": CHECK_BATCH,
    }
    if measure:
        parsed = Setting.parse(setting)
        result["setting"] = parsed.key
        result["latency_ms"] = round(export_latency(data, fmt, size, parsed, warmup, runs) * 1e3, 6)
        result["pytorch_latency_ms"] = round(measure_model(deployable(net), size, parsed, warmup, runs) * 1e3, 6)
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    seal(out, {**result, "provenance": provenance(seconds=time.perf_counter() - start)})
    return result
