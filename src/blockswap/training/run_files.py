"""The files of a finished training run's folder, and the check that each is the one the run's
record names. Torch-free: the figures that read a run's history need no more."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BlockswapError
from ..provenance import file_digest

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"  # the run's record: its metrics, and the sha256 of its model and history
HISTORY_FILE = "history.csv"


def check_recorded_file(path: str | Path, key: str) -> None:
    """A run's model.pt or history.csv must be the file its metrics.json, beside it, recorded under
    `key` when the run finished. A file copied in from another run carries its own seal, consistent
    with it; only the record beside it tells the two apart. Folders without that record (a run not
    finished, a file moved out of its folder) are taken as they are."""
    path = Path(path)
    record = path.parent / METRICS_FILE
    try:
        metrics = json.loads(record.read_bytes())
    except (OSError, ValueError):  # no record here; a damaged one is named by the readers of metrics.json
        return
    expected = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(expected, str) and file_digest(path) != expected:
        raise BlockswapError(
            f"{path} is not the file {record} records for its run (seed {metrics.get('seed')!r}): it was replaced "
            "or copied from another run; put the run's own file back, or delete the folder and rerun it"
        )
