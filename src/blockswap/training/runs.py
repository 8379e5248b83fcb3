"""The files of a training run (checkpoint, model, metrics, history) and when a run counts as
finished: a damaged or non-finite file is an error naming it, never taken for a finished run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import BlockswapError
from ..numeric import is_finite_number
from ..provenance import verify
from . import teachers
from .checkpoint import load_model
from .config import TrainConfig
from .run_files import METRICS_FILE, MODEL_FILE, check_recorded_file

CHECKPOINT_FILE = "checkpoint.pt"


def non_finite_tensors(tensors: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold inf or nan (one host sync)."""
    names = [name for name, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(tensors[name]).all() for name in names]).tolist()
    return [name for name, ok in zip(names, finite) if not ok]


# The convergence check looks at the last fifth of the epochs: with a schedule annealed to 0, a
# network whose validation error still moves there had not finished learning.
CONVERGENCE_FRACTION = 0.2


def convergence(history: list[dict]) -> dict:
    """The last epoch's mean training loss, and how far the validation error moved over the last
    CONVERGENCE_FRACTION of the epochs (last minus first of that window's ends, in points; None
    without a validation split or with a single epoch)."""
    window = max(1, round(CONVERGENCE_FRACTION * len(history)))
    val = [row.get("val_error") for row in history]
    change = None
    if len(history) > window and val[-1] is not None and val[-1 - window] is not None:
        change = val[-1] - val[-1 - window]
    return {
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "val_error_change": change,
        "convergence_window": window,
    }


def read_metrics(path: Path, out: Path) -> dict:
    """A finished run's metrics.json, checked for what `finished_run` and the reports rely on."""

    def damaged(reason: str) -> BlockswapError:
        # metrics.json is written last, after model.pt, and the checkpoint is gone by then:
        # deleting it retrains from the start, and the new run rewrites every file.
        return BlockswapError(f"{path} is damaged ({reason}); delete it, or the folder {out}, to train the run again")

    try:
        data = path.read_bytes()
        verify(path, data)  # an edit after writing is named before the contents are judged
        metrics = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise damaged(f"not valid JSON: {err}") from None
    except OSError as err:
        raise damaged(f"unreadable: {err.strerror or err}") from None
    if not isinstance(metrics, dict):
        raise damaged(f"a JSON {type(metrics).__name__}, not an object")
    if not isinstance(metrics.get("fingerprint"), str):
        raise damaged("no configuration fingerprint")
    for key in ("test_error", "test_error_top5"):
        value = metrics.get(key)
        if not (is_finite_number(value) and 0 <= value <= 100):
            raise damaged(f"{key} is {value!r}, not a percentage")
    return metrics


def check_finished_model(out: Path) -> None:
    """A finished run's model.pt must load, with finite weights: a run is only taken for finished
    if its network is there (a teacher, `blockswap evaluate` and the reports read it)."""
    path = out / MODEL_FILE
    advice = f"delete the folder {out} (or its {MODEL_FILE} and {METRICS_FILE}) to train the run again"
    if not path.is_file():
        raise BlockswapError(f"the finished run in {out} is damaged: {path} is missing; {advice}")
    try:
        _, record = load_model(path, recorded=False)  # its contents first, then whose it is (below)
    except BlockswapError as err:
        raise BlockswapError(f"the finished run in {out} is damaged: {err}; {advice}") from None
    # A run that diverged before training checked for it was recorded as finished with nan weights.
    bad = non_finite_tensors(record["state_dict"])
    if bad:
        raise BlockswapError(
            f"the finished run in {out} is damaged: {path} holds non-finite weights "
            f"({', '.join(bad[:3])}), so it diverged; {advice}, with a lower learning rate"
        )
    check_recorded_file(path, "model_sha256")


def finished_run(config: TrainConfig, out: Path, teacher_digest: str | None = None) -> dict | None:
    """The metrics of a finished run of `config` in `out`; None if there is none; an error if `out`
    holds a finished run of another configuration (another teacher's weights included), or a
    damaged one (its metrics.json or model.pt unreadable: one line saying which file and what to
    delete, never a run taken for finished). `teacher_digest`: the teacher's weights' sha256, if
    already known (`teachers.teacher_digest` reads it otherwise)."""
    out = Path(out)
    path = out / METRICS_FILE
    if not path.exists():
        return None
    metrics = read_metrics(path, out)
    if config.teacher is not None and teacher_digest is None:
        teacher_digest = teachers.teacher_digest(config.teacher)
    if metrics["fingerprint"] != config.fingerprint(teacher_digest):
        raise BlockswapError(
            f"{out} holds a finished run of a different configuration; use another --out folder or delete it"
        )
    check_finished_model(out)
    return metrics
