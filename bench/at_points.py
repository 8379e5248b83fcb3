"""Measurement: which side of the ReLU the ImageNet attention-transfer points sit on.

torchvision's ResNet-34 (the ImageNet teacher) is post-activation: each BasicBlock ends with a ReLU
after its residual add, so its section outputs (layer1..layer4) are post-ReLU. Our ImageNet students
are pre-activation ResNets whose stage outputs are raw residual sums. attention-transfer's ImageNet
code compares post-ReLU group outputs on both sides. This reports, at initialisation, the AT loss
summed over the 4 points (and beta x that, with the ImageNet beta for the image size) between a
fresh student and a torchvision ResNet-34 teacher, for:

    raw  -> post   student raw residual sums  vs teacher post-ReLU (what a plain comparison does)
    relu -> post   ReLU of the student's sums vs teacher post-ReLU (attention-transfer's ImageNet code)
    raw  -> pre    student raw residual sums  vs teacher pre-ReLU sums (raw on both sides)

and how far the choice moves each side's own maps: at_loss(pre-ReLU, post-ReLU) of the teacher
(pre-ReLU sums captured by a pre-hook on the last block's ReLU, which runs in place) and
at_loss(raw, ReLU(raw)) of the student.

No pretrained weights can be downloaded here: the teacher is torchvision's resnet34 with its own
random initialisation, in eval mode (as a frozen teacher runs); the student is in train mode (BN
batch statistics, as in a training step). Images: `noise` is i.i.d. N(0, 1) pixels; `smooth` is
8x8 N(0, 1) noise upsampled bilinearly, so that attention varies across the image.

    OMP_NUM_THREADS=2 python bench/at_points.py --size 224 --batches 4 --batch 8

Measured (2-core CPU, torch 2.14.1, torchvision 0.29.1, 224 px, 4 batches of 8, seed 0, 112 s;
AT loss summed over the 4 points, mean over the batches; beta = 750):

    student    images  raw->post  relu->post  raw->pre   teacher pre/post  student raw/relu
    resnet-34  noise   7.66e-4    9.44e-4     7.99e-4    1.8e-5            1.5e-4
    resnet-18  noise   1.16e-3    1.28e-3     1.21e-3    1.8e-5            1.6e-4
    resnet-34  smooth  2.30e-3    2.42e-3     2.36e-3    2.4e-5            1.5e-4
    resnet-18  smooth  3.18e-3    3.23e-3     3.25e-3    2.4e-5            1.7e-4

beta x the sum is 0.57 / 0.71 (raw->post / relu->post) for resnet-34 on noise up to 2.38 / 2.42 for
resnet-18 on smooth images, against a cross-entropy of ln(1000) = 6.9 at initialisation. Taking the
student's ReLU raises the loss at initialisation by 2-23 %; the student's own maps move by 1.5e-4
(raw vs ReLU), the random teacher's by only 2e-5: its residual sums add a branch to a non-negative
(post-ReLU) identity and are mostly positive already. A pretrained teacher's learnt BN weights and
biases may make more of its sums negative and its pre/post difference larger (not measurable here:
no pretrained weights are available offline). What training uses (`attention_transfer_losses` with
a torchvision teacher) is relu -> post; the script checks that it is.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision

from blockswap import build_model
from blockswap.networks.models import PostActivationStages
from blockswap.training.distillation import (
    attention_transfer_loss,
    attention_transfer_losses,
    default_beta,
)

SECTIONS = ("layer1", "layer2", "layer3", "layer4")


def teacher_points(teacher: torch.nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """Each section's output (post-ReLU) and its last residual sum before that ReLU."""
    post, pre = {}, {}
    handles = []
    for name in SECTIONS:
        section = getattr(teacher, name)
        handles.append(section.register_forward_hook(lambda m, i, out, name=name: post.__setitem__(name, out)))
        # BasicBlock applies one in-place ReLU module twice (after bn1, after the add): the last
        # call's input, copied before it is overwritten, is the residual sum.
        relu = section[-1].relu
        handles.append(relu.register_forward_pre_hook(lambda m, i, name=name: pre.__setitem__(name, i[0].clone())))
    try:
        teacher(x)
    finally:
        for h in handles:
            h.remove()
    for name in SECTIONS:
        assert torch.equal(F.relu(pre[name]), post[name])
    return [post[n] for n in SECTIONS], [pre[n] for n in SECTIONS]


def images(kind: str, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "noise":
        return torch.randn(n, 3, size, size, generator=generator)
    coarse = torch.randn(n, 3, 8, 8, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def at_sum(student: list, teacher: list) -> float:
    return float(sum(attention_transfer_loss(s, t) for s, t in zip(student, teacher)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--students", nargs="+", default=["resnet-34", "resnet-18"])
    args = parser.parse_args()

    start = time.perf_counter()
    beta = default_beta("imagenet", args.size)
    torch.manual_seed(args.seed)
    teacher = torchvision.models.resnet34(weights=None).eval()
    students = {name: build_model(name, num_classes=1000, seed=args.seed).train() for name in args.students}
    rows: dict[tuple[str, str], list[dict]] = {}
    for kind in ("noise", "smooth"):
        generator = torch.Generator().manual_seed(args.seed)
        for _ in range(args.batches):
            x = images(kind, args.batch, args.size, generator)
            with torch.no_grad():
                post, pre = teacher_points(teacher, x)
                for name, student in students.items():
                    raw = student.forward_intermediates(x).stages
                    relu = [F.relu(s) for s in raw]
                    used = float(sum(attention_transfer_losses(raw, PostActivationStages(post))))
                    assert used == at_sum(relu, post)
                    rows.setdefault((name, kind), []).append(
                        {
                            "raw->post": at_sum(raw, post),
                            "relu->post": at_sum(relu, post),
                            "raw->pre": at_sum(raw, pre),
                            "relu->pre": at_sum(relu, pre),
                            "teacher pre/post": at_sum(pre, post),
                            "student raw/relu": at_sum(raw, relu),
                        }
                    )

    columns = list(next(iter(rows.values()))[0])
    print(
        f"AT loss summed over {len(SECTIONS)} points, mean over {args.batches} batches of {args.batch} "
        f"at {args.size} px (beta = {beta:g}; random-initialised torchvision resnet34 teacher)"
    )
    header = f"{'student':<10} {'images':<7} " + " ".join(f"{c:>17}" for c in columns)
    print(header)
    for (name, kind), values in rows.items():
        means = {c: sum(v[c] for v in values) / len(values) for c in columns}
        print(f"{name:<10} {kind:<7} " + " ".join(f"{means[c]:>17.3e}" for c in columns))
        print(f"{'':<10} {'x beta':<7} " + " ".join(f"{beta * means[c]:>17.3f}" for c in columns))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
