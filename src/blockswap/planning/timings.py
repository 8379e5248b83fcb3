"""The measured rates `blockswap plan` turns into GPU-hours: seconds per training image and per
Fisher-scored candidate, per architecture family, at a reference input side.

The built-in figures were measured by `bash bench/gpu.sh` on one NVIDIA H100 80GB HBM3 (torch
2.11, 2026-11-26). The same script writes a timings file of this shape for the GPU it ran on
(`$OUT/timings.json`), and `blockswap plan CONFIG --timings FILE` plans with it instead. A family
the file leaves out keeps its built-in figures.

Per family (seconds per image at `side` px; other sizes scale with the pixel count):
- `teacher`: one training step of the teacher, per image;
- `student`: one student's own training step, per image;
- `teacher_forward`: the frozen teacher's forward pass for attention transfer, per image, paid
  once per minibatch by all the students of a lockstep job (each pays 1/K of it);
- `score`: seconds per Fisher-scored candidate (null: none was timed);
- `cuda_graphs` (optional): `student` and `teacher_forward` with `training.cuda_graphs`;
- `measured`: where and when, as the plan prints it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BlockswapError
from ..numeric import is_positive_number

TIMINGS_FORMAT = "blockswap-timings-1"
FAMILIES = ("wrn", "resnet")
RATES = ("teacher", "student", "teacher_forward")
GRAPHED_RATES = ("student", "teacher_forward")

# wrn: WRN-40-2 teacher 5,167 images/s; students the mean of 1/rate over a BlockSwap 404.2K,
# all-G(4) and all-G(N) WRN-40-2 (3,298, 2,968, 4,375 images/s); the teacher's forward pass taken
# as a third of its training step (an estimate, not measured). resnet: ResNet-34 at 224 px, batch
# 256, 2,874 images/s, for the teacher and for every student (no ImageNet student was timed).
# score: 1000 WRN-40-2 candidates at 404.2K, batch 128, in 50.7 s (TF32 on).
_WRN_TEACHER, _RESNET = 1 / 5167, 1 / 2874
BUILT_IN = {
    "wrn": {
        "side": 32,
        "teacher": _WRN_TEACHER,
        "student": (1 / 3298 + 1 / 2968 + 1 / 4375) / 3,
        "teacher_forward": _WRN_TEACHER / 3,
        "score": 0.0507,
        "measured": "bench/gpu.sh on one H100, 2026-11-26",
    },
    "resnet": {
        "side": 224,
        "teacher": _RESNET,
        "student": _RESNET,
        "teacher_forward": _RESNET / 3,
        "score": None,
        "measured": "bench/gpu.sh on one H100, 2026-11-26",
    },
}


def read_timings(path: str | Path | None) -> dict:
    """The built-in figures, with the families of the timings file at `path` (if any) in their place."""
    if path is None:
        return dict(BUILT_IN)
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise BlockswapError(f"timings file {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BlockswapError(f"timings file {path} is not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != TIMINGS_FORMAT:
        raise BlockswapError(f"timings file {path} is not a {TIMINGS_FORMAT} file (bench/gpu.sh writes timings.json)")
    families = data.get("families")
    if not isinstance(families, dict) or not families:
        raise BlockswapError(f"timings file {path}: 'families' must map {' or '.join(FAMILIES)} to their timings")
    merged = dict(BUILT_IN)
    for name, timing in families.items():
        if name not in FAMILIES:
            raise BlockswapError(f"timings file {path}: unknown family {name!r}; allowed: {', '.join(FAMILIES)}")
        merged[name] = checked_family(timing, f"timings file {path}: {name}")
    return merged


def checked_family(timing, where: str) -> dict:
    if not isinstance(timing, dict):
        raise BlockswapError(f"{where} must be a mapping")
    allowed = {"side", *RATES, "score", "cuda_graphs", "measured"}
    unknown = sorted(set(timing) - allowed)
    if unknown:
        raise BlockswapError(f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    side = timing.get("side")
    if not (isinstance(side, int) and not isinstance(side, bool) and side >= 1):
        raise BlockswapError(f"{where}: side must be a whole number of pixels >= 1, got {side!r}")
    for key in RATES:
        positive(timing.get(key), f"{where}: {key}")
    if timing.get("score") is not None:
        positive(timing["score"], f"{where}: score")
    graphed = timing.get("cuda_graphs")
    if graphed is not None:
        if not isinstance(graphed, dict) or set(graphed) != set(GRAPHED_RATES):
            raise BlockswapError(f"{where}: cuda_graphs must hold exactly {' and '.join(GRAPHED_RATES)}")
        for key in GRAPHED_RATES:
            positive(graphed[key], f"{where}: cuda_graphs.{key}")
    if not isinstance(timing.get("measured"), str) or not timing["measured"].strip():
        raise BlockswapError(f"{where}: measured must say where and when (a non-empty string)")
    return {"score": None, **timing}


def positive(value, where: str) -> None:
    if not is_positive_number(value):
        raise BlockswapError(f"{where} must be a positive number of seconds, got {value!r}")


def student_rates(timing: dict, cuda_graphs: bool) -> tuple[float, float, bool]:
    """(student, teacher_forward, graphed): the graphed figures when the run captures its steps and
    they were measured, else the eager ones (graphed False)."""
    graphed = timing.get("cuda_graphs")
    if cuda_graphs and graphed:
        return graphed["student"], graphed["teacher_forward"], True
    return timing["student"], timing["teacher_forward"], False
