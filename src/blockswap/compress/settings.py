"""What `blockswap compress` is asked to do, read from its arguments and checked before anything runs:
the teacher spec, the budget ("8M" parameters, "1.2G" MACs, "5ms" latency), the blocks kept as the
teacher's own, and the search, training and export settings."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..deploy.calibration import DEFAULT_NETWORKS
from ..deploy.export import FORMATS
from ..errors import BlockswapError
from ..networks.teacher_specs import is_pretrained_spec, parse_spec, supported
from ..provenance import json_digest
from ..search.sampling import BUDGET_KINDS

# Budget suffixes per kind: params and MACs are counts, latency is whole microseconds (the sampler's unit).
COUNT_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
LATENCY_SUFFIXES = {"": 1, "us": 1, "ms": 1e3, "s": 1e6}
SUFFIXES = {"params": COUNT_SUFFIXES, "macs": COUNT_SUFFIXES, "latency": LATENCY_SUFFIXES}
BUDGET_FORMS = {
    "params": "a count such as 8M, 800K or 8000000",
    "macs": "a count such as 1.2G or 600M",
    "latency": "a time such as 5ms or 800us (microseconds without a unit)",
}


def parse_budget(text: str, kind: str) -> float:
    """A budget as the sampler counts it: parameters, MACs or microseconds."""
    if kind not in BUDGET_KINDS:
        raise BlockswapError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, got {kind!r}")
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    scale = SUFFIXES[kind].get(match[2]) if match else None
    value = float(match[1]) * scale if scale is not None else math.nan
    if not (math.isfinite(value) and value > 0):
        raise BlockswapError(f"--budget {text!r} is not a {kind} budget; write {BUDGET_FORMS[kind]}")
    return value


def teacher_spec(teacher: str, weights: str | None) -> str:
    """`SOURCE:NAME` and a weights file as one spec (`SOURCE:NAME:FILE`), or the spec as given; an
    unknown source or name is one error listing the supported teachers."""
    if not is_pretrained_spec(teacher):
        raise BlockswapError(f"unsupported teacher {teacher!r}; allowed: {supported()} (SOURCE:NAME)")
    if weights is not None:
        if teacher.count(":") > 1:
            raise BlockswapError(f"--teacher {teacher} names a weights file and so does --weights: give it once")
        teacher = f"{teacher}:{Path(weights).expanduser().resolve()}"
    parse_spec(teacher)
    return teacher


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip() for f in str(text).split(",") if f.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise BlockswapError(f"--formats takes one or more of {', '.join(FORMATS)} separated by commas, got {text!r}")
    return formats


@dataclass(frozen=True)
class CompressSettings:
    """Everything that decides the result of a compression: rerun with the same settings, a folder
    resumes; with others, it is refused (`fingerprint`)."""

    teacher: str  # SOURCE:NAME:FILE
    data: str  # the user's image folder (absolute)
    budget: float
    budget_kind: str = "params"
    image_size: int = 224
    mean: tuple[float, ...] | None = None  # None: the teacher's library's normalisation
    std: tuple[float, ...] | None = None
    keep: tuple[int, ...] = ()  # block positions kept as the teacher's own (with its weights)
    candidates: str | None = None  # None: the set that fits the teacher's section widths
    method: str = "evolution"
    proxy: str = "fisher"
    samples: int = 100
    tolerance: float = 0.025
    search_batch_size: int = 64
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01  # at 0.05 (batch 64) a digits student's training loss rose for five epochs
    weight_decay: float = 5e-4
    beta: float | None = None  # AT weight per point; None: the paper's ImageNet beta scaled to the image size
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    latency_setting: str = "cpu/t1/b1"
    calibration_samples: int = DEFAULT_NETWORKS  # whole networks timed to calibrate a latency budget
    # "thread": this process's CPU time, which other work on a shared machine does not inflate
    latency_clock: str = "wall"
    extra: dict = field(default_factory=dict)  # not part of the result (e.g. progress bars)

    def fingerprint(self, teacher_sha256: str) -> str:
        values = asdict(self)
        values.pop("extra")
        values["teacher"] = teacher_sha256  # the weights, wherever the file lives
        return json_digest(values)[:16]
