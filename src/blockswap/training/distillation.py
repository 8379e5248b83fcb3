"""Step 3 of BlockSwap: attention transfer (Zagoruyko & Komodakis, 2017), the code variant the
paper uses (docs/paper.md s.4), and optional Hinton knowledge distillation (off in the paper).

    at(x)           = l2_normalise( mean_c(x^2).flatten() )          per example
    at_loss(s, t)   = mean( (at(s) - at(t))^2 )
    total           = CE + beta * sum over AT points of at_loss       (beta = 1000 per point)

beta is the paper's for its image sizes (1000 on 32 px CIFAR, 750 on 224 px ImageNet). An attention
map is an l2-normalised vector of H*W entries and at_loss a mean over them, so the term shrinks
roughly as 1/(H*W) as maps grow and grows as they shrink: on 8 px digits beta 1000 swamps the
cross-entropy (WRN-16-1 BG(2,4): 43.6 % error, against 12.2 % with the scaled 62.5).
`default_beta` therefore scales the paper's value by (image size / paper size)^2.

Which side of the ReLU an AT point sits on follows the teacher. Our networks are pre-activation:
their stage outputs are raw residual sums, compared as they are with a teacher of ours (the
released BlockSwap code, CIFAR). torchvision's ResNets are post-activation (each block ends with a
ReLU after its residual add) and return their stages as `PostActivationStages`; the student's
stages are then compared after a ReLU too, as attention-transfer's ImageNet code compares post-ReLU
group outputs on both sides. The ReLU is taken for the AT loss only: the student's forward is
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import BlockswapError
from ..networks.models import PostActivationStages

# The paper's AT weight per point and the image side it was set for, per training protocol
# (docs/paper.md s.4: CIFAR-10 at 32 px, ImageNet at 224 px).
PAPER_BETA: dict[str, tuple[float, int]] = {
    "cifar": (1000.0, 32),
    "imagenet": (750.0, 224),
}


def default_beta(protocol: str, image_size: int) -> float:
    """The paper's beta for `protocol`, scaled to `image_size` by (image_size / paper size)^2, so
    that beta x AT loss keeps the paper's weight at other map sizes (8 px -> 62.5, 16 px -> 250)."""
    try:
        beta, size = PAPER_BETA[protocol]
    except KeyError:
        raise BlockswapError(f"unknown protocol {protocol!r}; allowed: {', '.join(PAPER_BETA)}") from None
    if image_size < 1:
        raise BlockswapError(f"image size must be positive, got {image_size}")
    return beta * (image_size / size) ** 2


def student_points(student_stages: Sequence[torch.Tensor], teacher_stages: Sequence[torch.Tensor]) -> list:
    """The student's stages as compared with `teacher_stages`: on the same side of the ReLU."""
    if isinstance(teacher_stages, PostActivationStages):
        return [F.relu(s) for s in student_stages]
    return list(student_stages)


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """Spatial attention of a feature map (N, C, H, W): channel-mean of squares, l2-normalised."""
    return F.normalize(x.float().pow(2).mean(1).flatten(1), dim=1)


def attention_transfer_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (attention_map(student) - attention_map(teacher)).pow(2).mean()


def attention_transfer_losses(
    student_stages: Sequence[torch.Tensor], teacher_stages: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """The AT loss at each point, the student's stages taken on the teacher's side of the ReLU."""
    return [
        attention_transfer_loss(s, t) for s, t in zip(student_points(student_stages, teacher_stages), teacher_stages)
    ]


def check_compatible(student_stages: Sequence[torch.Tensor], teacher_stages: Sequence[torch.Tensor]) -> None:
    """Attention maps need the same number of points and the same spatial sizes (channels may differ)."""
    if len(student_stages) != len(teacher_stages):
        raise BlockswapError(
            f"teacher has {len(teacher_stages)} attention-transfer points but the student has {len(student_stages)}; "
            "distil between networks with the same number of stages"
        )
    for i, (s, t) in enumerate(zip(student_stages, teacher_stages)):
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise BlockswapError(
                f"stage {i} of the student is {tuple(s.shape[2:])} pixels but the teacher's is {tuple(t.shape[2:])}; "
                "attention maps must match in size"
            )


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    student_stages: Sequence[torch.Tensor],
    teacher_logits: torch.Tensor,
    teacher_stages: Sequence[torch.Tensor],
    beta: float,
    kd_alpha: float = 0.0,
    kd_temperature: float = 4.0,
) -> torch.Tensor:
    """CE (or the KD mix when kd_alpha > 0) + beta * sum of AT losses over the stage outputs (the
    student's after a ReLU when the teacher's are `PostActivationStages`)."""
    loss = F.cross_entropy(logits, labels)
    if kd_alpha > 0:
        t = kd_temperature
        kd = F.kl_div(
            F.log_softmax(logits.float() / t, dim=1),
            F.softmax(teacher_logits.float() / t, dim=1),
            reduction="batchmean",
        )
        loss = (1 - kd_alpha) * loss + kd_alpha * t * t * kd
    if beta:
        loss = loss + beta * sum(attention_transfer_losses(student_stages, teacher_stages))
    return loss
