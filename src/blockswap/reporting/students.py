"""The students table: one row per trained network, read from each run's metrics.json
(checked), with its measured latency, training time and convergence where known."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..deploy.settings import LATENCY_COLUMN
from ..errors import BlockswapError
from ..validation import EXPECTED, check_value, read_csv_table, read_json_record, require

STUDENT_COLUMNS = [
    "method",
    "network",
    "arch",
    "genotype",
    "budget",
    "seed",
    "params",
    "macs",
    "ops",
    "test_error",
    "test_error_top5",
    "fisher",
    "candidate",
    "dataset",
]
# The kind of each column of a students table (validation.EXPECTED); "?": may be empty.
STUDENT_KINDS = {
    "method": "text",
    "network": "text",
    "arch": "text",
    "genotype": "text",
    "budget": "int?",
    "seed": "int",
    "params": "int",
    "macs": "int",
    "ops": "int",
    "test_error": "error",
    "test_error_top5": "error",
    "fisher": "number?",
    "candidate": "int?",
    "dataset": "text",
    "latency_ms": "number?",
    "train_seconds": "number?",
    "images_per_s": "number?",
    "final_train_loss": "number?",
    "val_error_change": "number?",
    "convergence_window": "int?",
}
# Measured latency of each network on the evaluating machine (`blockswap measure --out`), a column
# after STUDENT_COLUMNS: empty where none was measured, absent from tables written before it existed.
LATENCY_KEYS = {"run": "text", "setting": "text", "latency_ms": "number"}
# What a training run's metrics.json must hold for its row, and as what.
METRICS_KEYS = {
    "arch": "text",
    "genotype": "names",
    "seed": "int",
    "params": "int",
    "macs": "int",
    "ops": "int",
    "test_error": "error",
    "test_error_top5": "error",
    "dataset": "text",
}
# What each network's training cost, after the latency column (absent from older tables): the
# seconds its epochs took (training and validation passes, summed over resumptions; not loading or
# the final test) and the training images it went through per second. Empty for a network that
# was not trained here (a pretrained teacher) and, for images/s, when no data summary is given.
TIME_COLUMNS = ["train_seconds", "images_per_s"]
# Whether each run converged, after the time columns (absent from older tables and runs): the last
# epoch's mean training loss, the validation error at the last epoch minus that at the start of the
# last 20 % of epochs (points; null without a validation split) and the epochs of that window.
CONVERGENCE_KEYS = {"final_train_loss": "number?", "val_error_change": "number?", "convergence_window": "int?"}
CONVERGENCE_COLUMNS = list(CONVERGENCE_KEYS)
# Tags (strings in metrics.json) read into the table, and the kind each must parse as.
TAG_KINDS = {"budget": "int", "fisher": "number", "candidate": "int"}


def _tag(tags: dict, path, key: str):
    if key not in tags:
        return None
    try:
        return check_value(tags[key], TAG_KINDS[key], from_text=True)
    except (TypeError, ValueError):
        raise BlockswapError(f"{path}: tags.{key} is {tags[key]!r}, expected {EXPECTED[TAG_KINDS[key]]}") from None


def check_run_place(path: str | Path, network: str, seed: int, teacher: bool) -> None:
    """A result read from a run's folder must be that run's: a `seed-<seed>/` folder names the seed
    the file records, the workflow's `students/<network>/` the network (`teachers/`: a teacher), and
    the file is not a link to another folder's. A file copied or linked into another run's place would
    otherwise be counted as that run."""
    path = Path(path)
    if path.is_symlink() and path.resolve().parent != path.parent.resolve():
        raise BlockswapError(f"{path} is a link to {path.resolve()}: a run's results must be its own files")
    folder = path.parent.name
    if not folder.startswith("seed-") or not folder[5:].isdigit():
        return  # a folder the user named: nothing to compare
    if int(folder[5:]) != seed:
        raise BlockswapError(f"{path} records seed {seed} but sits in {folder}/: it is another run's result")
    place = path.parent.parent
    if place.parent.name == "students" and place.name != network:  # the workflow's layout
        raise BlockswapError(
            f"{path} records the run {network!r} but sits in {place.name}/: it is another run's result"
        )
    if place.name == "teachers" and not teacher:
        raise BlockswapError(f"{path} records the student {network!r} but sits in teachers/: it is not a teacher")


def check_unique_runs(frame: pd.DataFrame, what: str) -> None:
    """Each (network, seed) once: a run counted twice would weigh twice in every mean."""
    repeated = frame[frame.duplicated(["network", "seed"], keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        raise BlockswapError(f"{what}: the run {first['network']} seed {first['seed']} appears more than once")


def measured_latencies(paths: Iterable[str | Path]) -> dict[Path, float]:
    """Training folder -> measured milliseconds, from `blockswap measure --out` files (one setting)."""
    found, settings = {}, set()
    for path in paths:
        record = read_json_record(path, "latency file")
        values = {key: require(record, path, key, kind) for key, kind in LATENCY_KEYS.items()}
        settings.add(values["setting"])
        run = Path(values["run"])
        found[(run if run.is_dir() else run.parent).resolve()] = values["latency_ms"]
    if len(settings) > 1:
        raise BlockswapError(
            f"latency files measured under different settings ({', '.join(sorted(settings))}): "
            "one table compares one setting"
        )
    return found


def training_images(summary) -> tuple[str, dict]:
    """The dataset and split sizes of a data summary (`blockswap data --out`)."""
    record = read_json_record(summary, "data summary")
    dataset = require(record, summary, "dataset", "text")
    splits = record.get("splits")
    if not isinstance(splits, dict) or "train" not in splits:
        raise BlockswapError(f"{summary}: splits.train is missing (expected {EXPECTED['int']})")
    return dataset, {name: require(splits, f"{summary}: splits", name, "int") for name in splits}


def training_time(m: dict, path, data: tuple[str, dict] | None) -> dict:
    """train_seconds and images_per_s of one metrics.json (TIME_COLUMNS). Images per epoch are the
    summary's training split, less a validation hold-out the network made itself (--val-size on a
    summary without a val split), and only whole batches under --drop-last."""
    epochs = require(m, path, "epochs", "int?")
    stamp = m.get("provenance") if isinstance(m.get("provenance"), dict) else {}
    seconds = require(stamp, f"{path}: provenance", "wall_seconds", "number?")
    if not epochs or not seconds:  # evaluated, not trained here (a pretrained teacher)
        return dict.fromkeys(TIME_COLUMNS)
    if data is None:
        return {"train_seconds": seconds, "images_per_s": None}
    dataset, splits = data
    if dataset != m["dataset"]:
        raise BlockswapError(f"{path} trained on {m['dataset']} but the data summary describes {dataset}")
    hyper = m.get("hyperparameters") if isinstance(m.get("hyperparameters"), dict) else {}
    where = f"{path}: hyperparameters"
    held = require(hyper, where, "val_size", "int?") or 0
    images = splits["train"] - (held if "val" not in splits else 0)
    batch = require(hyper, where, "batch_size", "int?")
    if hyper.get("drop_last") and batch:
        images -= images % batch
    return {"train_seconds": seconds, "images_per_s": round(images * epochs / seconds, 1)}


def students_table(
    paths: Iterable[str | Path], latency: Iterable[str | Path] = (), data: str | Path | None = None
) -> pd.DataFrame:
    """One row per trained network (`metrics.json` of `blockswap train`), teachers included; each
    file's values are checked, so a damaged one stops the table instead of becoming a NaN row.
    `latency` files (`blockswap measure --out`) fill the latency_ms column of the runs they measured;
    the data summary (`blockswap data --out`), the number of training images behind images_per_s."""
    splits = training_images(data) if data is not None else None
    latencies = measured_latencies(latency)
    paths = list(paths)
    unmatched = set(latencies) - {Path(p).parent.resolve() for p in paths}
    if unmatched:
        raise BlockswapError(f"a latency file measures {min(unmatched)}, whose metrics.json is not an input")
    rows = []
    for path in paths:
        m = read_json_record(path, "training metrics file")
        values = {key: require(m, path, key, kind) for key, kind in METRICS_KEYS.items()}
        tags = m.get("tags") or {}
        if not isinstance(tags, dict):
            raise BlockswapError(f"{path}: tags is not a mapping")
        # A searched or picked student carries its candidate index and Fisher value in its own
        # tags (copied from its genotype file when it was trained): no file outside the inputs is read.
        is_teacher = m.get("teacher") is None
        network = tags.get("network", Path(path).parent.parent.name)
        check_run_place(path, network, values["seed"], is_teacher or tags.get("method") == "teacher")
        rows.append(
            {
                **values,
                "method": tags.get("method", "teacher" if is_teacher else "student"),
                "network": network,
                "genotype": " ".join(values["genotype"]),
                "budget": _tag(tags, path, "budget"),
                "fisher": _tag(tags, path, "fisher"),
                "candidate": _tag(tags, path, "candidate"),
                LATENCY_COLUMN: latencies.get(Path(path).parent.resolve()),
                **training_time(m, path, splits),
                **{key: require(m, path, key, kind) for key, kind in CONVERGENCE_KEYS.items()},
            }
        )
    frame = pd.DataFrame(rows, columns=STUDENT_COLUMNS + [LATENCY_COLUMN, *TIME_COLUMNS, *CONVERGENCE_COLUMNS])
    frame["budget"] = frame["budget"].astype("Int64")
    frame["candidate"] = frame["candidate"].astype("Int64")
    frame["convergence_window"] = frame["convergence_window"].astype("Int64")
    check_unique_runs(frame, "students table")
    return frame.sort_values(["method", "network", "seed"], kind="stable").reset_index(drop=True)


def read_students(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Students tables (`blockswap report students`), checked (seal, whole lines, every column and
    cell), as one table."""
    paths = list(paths)
    frames = [read_csv_table(path, "students table", STUDENT_KINDS, STUDENT_COLUMNS)[0] for path in paths]
    frame = pd.concat(frames, ignore_index=True)
    check_unique_runs(frame, ", ".join(map(str, paths)))
    return frame
