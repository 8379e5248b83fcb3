"""`blockswap compress`: a user's trained ResNet, a folder of their images and a budget, to a smaller
student distilled from it, exported and reported (compress/pipeline.py, docs/compress.md)."""

from __future__ import annotations

import time
from pathlib import Path

from ..compress.pipeline import compress
from ..compress.settings import (
    BUDGET_FORMS,
    CompressSettings,
    parse_budget,
    parse_formats,
    teacher_spec,
)
from ..data.datasets import check_image_size
from ..deploy.calibration import MIN_NETWORKS
from ..deploy.export import FORMATS
from ..deploy.timing import CLOCKS
from ..devices import DEVICE_HELP, resolve_device
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.blocks import CANDIDATE_SETS
from ..networks.teacher_specs import keep_slots, parse_spec, supported
from ..search.evolution import SEARCH_METHODS
from ..search.sampling import BUDGET_KINDS
from ..seeds import seed_argument
from .data_options import add_normalisation_options, normalisation

TEACHERS_OWN = "the teacher library's"
DEFAULTS = CompressSettings(teacher="", data="", budget=1.0)


def settings_from(args) -> CompressSettings:
    spec = teacher_spec(args.teacher, args.weights)
    arch, _ = parse_spec(spec)
    for name in ("samples", "epochs", "batch_size", "search_batch_size"):
        if getattr(args, name) < 1:
            raise BlockswapError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.tolerance < 1:
        raise BlockswapError(f"--tolerance must be a fraction between 0 and 1, got {args.tolerance}")
    mean, std = normalisation(args, TEACHERS_OWN)
    return CompressSettings(
        teacher=spec,
        data=str(Path(args.data).expanduser().resolve()),
        budget=parse_budget(args.budget, args.budget_kind),
        budget_kind=args.budget_kind,
        image_size=check_image_size(args.image_size, "--image-size"),
        mean=mean,
        std=std,
        keep=keep_slots(args.keep, arch, parse_arch(arch.skeleton)),
        candidates=args.candidates,
        method=args.method,
        proxy=args.proxy,
        samples=args.samples,
        tolerance=args.tolerance,
        search_batch_size=args.search_batch_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        beta=args.beta,
        seed=args.seed,
        formats=parse_formats(args.formats),
        latency_setting=args.latency_setting,
        calibration_samples=args.calibration_samples,
        latency_clock=args.latency_clock,
        extra={"quiet": args.quiet},
    )


def cmd_compress(args) -> None:
    start = time.perf_counter()
    settings = settings_from(args)
    record = compress(settings, Path(args.out), resolve_device(args.device))
    t, s = record["teacher"], record["student"]
    print(
        f"compressed {args.teacher}: {t['params']} -> {s['params']} params, {t['macs']} -> {s['macs']} MACs, "
        f"test error {t['test_error']:.2f}% -> {s['test_error']:.2f}% in {time.perf_counter() - start:.1f} s "
        f"-> {Path(args.out) / 'report.md'}"
    )


def add_compress(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="compress your own trained ResNet on your images to a budget",
        description="Search a student with the teacher's skeleton inside the budget (Fisher potential or any proxy "
        "of the registry; random or evolutionary search), distil it from the teacher with attention transfer, "
        "evaluate both on the held-out split, export the student (ONNX / TorchScript, checked) and write a "
        "one-page report. Rerun with the same settings to resume. Teachers: " + supported(),
    )
    p.add_argument("--teacher", required=True, help="SOURCE:NAME, e.g. torchvision:resnet50 or timm:resnet18")
    p.add_argument(
        "--weights",
        help="the teacher's state dict (.pth / .bin, or .safetensors), any class count; read locally, never "
        "downloaded (torchvision: default the torch hub cache's published file)",
    )
    p.add_argument("--data", required=True, help="image folder: DATA/<class>/<images> or DATA/{train,test}/<class>/")
    p.add_argument("--budget", required=True, help="; ".join(f"{k}: {v}" for k, v in BUDGET_FORMS.items()))
    p.add_argument("--budget-kind", choices=BUDGET_KINDS, default="params", help="what the budget counts")
    p.add_argument("--out", required=True, help="output folder (a rerun with the same settings resumes it)")
    p.add_argument("--image-size", type=int, default=DEFAULTS.image_size, help="image side in pixels (default 224)")
    add_normalisation_options(p, TEACHERS_OWN)
    p.add_argument(
        "--keep",
        help="blocks kept as the teacher's own, with its weights: sections or blocks by the teacher's names, e.g. "
        "layer1,layer2.0 (compress only the rest)",
    )
    p.add_argument(
        "--candidates",
        choices=sorted(CANDIDATE_SETS),
        help="block types to draw from (default: paper for ResNet-18/34, bottleneck for the bottleneck ResNets)",
    )
    p.add_argument("--method", choices=SEARCH_METHODS, default=DEFAULTS.method, help="search (default evolution)")
    p.add_argument("--proxy", default=DEFAULTS.proxy, help="a proxy of the registry (default fisher)")
    p.add_argument("--samples", type=int, default=DEFAULTS.samples, help="proxy evaluations (default 100)")
    p.add_argument("--tolerance", type=float, default=DEFAULTS.tolerance, help="relative budget band (default 0.025)")
    p.add_argument("--search-batch-size", type=int, default=DEFAULTS.search_batch_size, help="proxy minibatch")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="distillation epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="training batch (default 64)")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="SGD learning rate, cosine to 0 (default 0.01)")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, help="default 5e-4")
    p.add_argument("--beta", type=float, help="AT weight per point (default: 750 scaled by (image size / 224)^2)")
    p.add_argument("--seed", type=seed_argument, default=0, help="seeds search, initialisation and data order")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"exports, from {', '.join(FORMATS)} (default both)")
    p.add_argument("--latency-setting", default=DEFAULTS.latency_setting, help="where latency is timed (cpu/t1/b1)")
    p.add_argument(
        "--latency-clock",
        choices=sorted(CLOCKS),
        default=DEFAULTS.latency_clock,
        help="wall time (default), or this process's CPU time (thread) on a machine other work shares",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        default=DEFAULTS.calibration_samples,
        help="whole networks timed to calibrate a latency budget's setting "
        f"(default {DEFAULTS.calibration_samples}, at least {MIN_NETWORKS})",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


COMMANDS = {"compress": (add_compress, cmd_compress)}
