"""Strict reading of the files one stage writes and another reads (scores, candidates, metrics,
students tables, selections).

Every such file is checked when it is read: its seal (provenance.verify), whole lines, the columns
or keys the reader needs, and each value's kind (whole numbers, finite numbers, errors in
[0, 100], non-empty text). A damaged or hand-edited file is one `BlockswapError` naming the file,
the line or key and what was expected, never a wrong number in a table.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
import yaml

from .errors import BlockswapError
from .provenance import read_verified

# What each kind of value must be. A kind ending in "?" may also be empty (CSV) or null (JSON).
EXPECTED = {
    "int": "a whole number from 0 to 2^53",
    "number": "a finite number",
    "error": "a finite error in [0, 100] (%)",
    "text": "non-empty text",
    "names": "a list of block names",
    "numbers": "a JSON list of finite numbers",
}
NUMERIC = ("int", "number", "error")  # kinds pandas must read as numbers
# The largest whole number a table holds exactly: pandas reads a column with an empty cell as
# floats, and larger counts would overflow the int64 arithmetic of the reports.
MAX_INT = 2**53

# A column's kind, by name: a dict, or a function returning None for a column nobody checks.
Kinds = Mapping[str, str] | Callable[[str], str | None]


def _kind_of(kinds: Kinds, column: str) -> str | None:
    return kinds(column) if callable(kinds) else kinds.get(column)


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    if not math.isfinite(value):
        raise ValueError
    return float(value)


def check_value(value, kind: str, from_text: bool = False):
    """`value` as `kind` (parsed first if it is a CSV cell, `from_text`); ValueError if it is not one."""
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None or (from_text and value == ""):
        if optional:
            return None
        raise ValueError
    if from_text and kind in ("int", "number", "error"):
        value = float(value)  # "12" and "12.0" (a column pandas wrote as floats) are both 12
    elif from_text and kind == "numbers":
        value = json.loads(value)
    if kind == "int":
        number = _number(value)
        if not number.is_integer() or not 0 <= number <= MAX_INT:
            raise ValueError
        return int(number)
    if kind == "number":
        return _number(value)
    if kind == "error":
        number = _number(value)
        if not 0 <= number <= 100:
            raise ValueError
        return number
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise ValueError
        return value
    if kind == "names":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError
        return value
    if kind == "numbers":
        if not isinstance(value, list):
            raise ValueError
        return [_number(v) for v in value]
    raise AssertionError(f"unknown kind {kind!r}")


def require(record: dict, source, key: str, kind: str):
    """`record[key]` checked as `kind`; one error naming the file and the key if it is missing or wrong."""
    if key not in record and not kind.endswith("?"):
        raise BlockswapError(f"{source}: {key} is missing (expected {EXPECTED[kind.rstrip('?')]})")
    value = record.get(key)
    try:
        return check_value(value, kind)
    except (ValueError, TypeError):
        shown = "null" if value is None else json.dumps(value) if _jsonable(value) else repr(value)
        raise BlockswapError(f"{source}: {key} is {shown[:60]}, expected {EXPECTED[kind.rstrip('?')]}") from None


def _jsonable(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def read_text(path, what: str) -> tuple[str, dict | None]:
    """The text of an input file, checked against its seal, and its sidecar record."""
    data, record = read_verified(path, what)
    try:
        return data.decode("utf-8"), record
    except UnicodeDecodeError:
        raise BlockswapError(f"{path} is not a text file, so not a {what}") from None


def read_json_record(path, what: str) -> dict:
    """A JSON object written by this package, checked against its seal."""
    text, _ = read_text(path, what)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise BlockswapError(f"{what} {path} is not valid JSON: {err}") from None
    except RecursionError:
        raise BlockswapError(f"{what} {path} nests too deeply to be one") from None
    if not isinstance(record, dict):
        raise BlockswapError(f"{what} {path} is not a JSON object")
    return record


def load_yaml(path, what: str):
    """The data of a YAML file a user wrote (a configuration); one error naming the file if it is
    missing, not UTF-8 text or not YAML (with the line, where YAML gives one)."""
    path = Path(path)
    if not path.is_file():
        raise BlockswapError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BlockswapError(f"{path} is not UTF-8 text (byte {err.start}), so not a {what}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BlockswapError(f"{what} {path}{where} is not valid YAML: {problem}") from None
    except RecursionError:
        raise BlockswapError(f"{what} {path} nests too deeply to be one") from None


def parse_csv(text: str, source, kinds: Kinds, required: Iterable[str] = (), first_line: int = 1) -> pd.DataFrame:
    """A CSV text (a header, then rows) checked cell by cell: every row has the header's fields,
    every `required` column is present and every cell of a column with a kind is one. Lines are
    numbered from `first_line` (the header's)."""
    # strict: a quote left open (a cut or an edit) is an error, not a field running to the end.
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise BlockswapError(f"{source} is empty (no header line)")
        _check_rows(reader, header, source, kinds, required, first_line)
    except csv.Error as err:
        raise BlockswapError(f"{source} line {first_line + reader.line_num - 1} is not valid CSV ({err})") from None
    # The text that was checked is the text pandas reads (not the file again, which may change).
    frame = pd.read_csv(io.StringIO(text))
    for column in frame.columns:
        kind = _kind_of(kinds, column)
        if (
            kind is not None
            and kind.rstrip("?") in NUMERIC
            and len(frame)
            and not pd.api.types.is_numeric_dtype(frame[column])
        ):
            # Python reads a few spellings of numbers ("1_000", " 12") that pandas leaves as text.
            raise BlockswapError(f"{source}: column {column} does not read as numbers")
    return frame


def _check_rows(reader, header: list[str], source, kinds: Kinds, required: Iterable[str], first_line: int) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise BlockswapError(f"{source} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise BlockswapError(f"{source} has the column {doubled[0]} twice")
    checked = [(i, column, _kind_of(kinds, column)) for i, column in enumerate(header)]
    checked = [(i, column, kind) for i, column, kind in checked if kind is not None]
    for row in reader:
        line = first_line + reader.line_num - 1
        if len(row) != len(header):
            raise BlockswapError(
                f"{source} line {line} has {len(row)} fields where the header has {len(header)} (cut short, or edited?)"
            )
        for i, column, kind in checked:
            try:
                check_value(row[i], kind, from_text=True)
            except (ValueError, TypeError, json.JSONDecodeError):
                raise BlockswapError(
                    f"{source} line {line}: {column} is {row[i][:60]!r}, expected {EXPECTED[kind.rstrip('?')]}"
                ) from None


def read_csv_table(path, what: str, kinds: Kinds, required: Iterable[str] = ()) -> tuple[pd.DataFrame, dict | None]:
    """A CSV result file, checked (seal, whole lines, columns, cells): the table and its sidecar
    record (None where it has none)."""
    text, record = read_text(path, what)
    if text and not text.endswith("\n"):
        # Every CSV this package writes ends with a newline: a file without one was cut short.
        raise BlockswapError(
            f"{what} {path} ends in the middle of a line: it was cut short (a full disk, an "
            "interrupted copy?); rerun the step that wrote it"
        )
    return parse_csv(text, Path(path), kinds, required), record


# --- minibatches batch norm can train on ------------------------------------------------------------


def smallest_training_batch(train_size: int, batch_size: int, drop_last: bool = False) -> int:
    """The fewest images a training minibatch of an epoch holds, as data.loader draws them: full
    batches of `batch_size`, then the rest unless `drop_last`; a split smaller than one batch is
    one batch of all of it."""
    if train_size <= batch_size:
        return train_size
    rest = train_size % batch_size
    return rest if rest and not drop_last else batch_size


def check_batch_norm_batch(arch, input_size, batch: int, which: str, advice: str) -> None:
    """Batch norm in training mode needs more than one value per channel: a minibatch of one image
    cannot pass a layer whose feature map is 1x1, which the last stage of `arch` (an Architecture)
    is at small `input_size`s. `which` names the minibatch, `advice` the way out."""
    h, w = arch.feature_sizes(tuple(input_size))[-1]
    if batch * h * w <= 1:
        size = "x".join(map(str, input_size))
        raise BlockswapError(
            f"{which} holds {batch} image{'s' if batch != 1 else ''} and {arch.name}'s last stage is "
            f"{h}x{w} at {size} px: batch norm cannot train on one value per channel; {advice}"
        )


# How check_training_batches names the settings: the train command's flags by default.
TRAINING_FLAGS = {"batch_size": "--batch-size", "drop_last": "--drop-last", "image_size": "--image-size"}


def check_training_batches(
    arch,
    input_size,
    batch_size: int,
    drop_last: bool = False,
    train_size: int | None = None,
    names: Mapping[str, str] = TRAINING_FLAGS,
) -> None:
    """Every training minibatch must be one batch norm can train on (check_batch_norm_batch).
    `train_size` (training images) gives the last, partial batch; without it (a configuration read
    before any data is) only the full batches are checked. `names` says how the error names
    batch_size, drop_last and image_size (a workflow configuration: its keys)."""
    if train_size is None:
        batch = batch_size
    else:
        batch = smallest_training_batch(train_size, batch_size, drop_last)
    if batch == batch_size:
        which = f"every training minibatch ({names['batch_size']} {batch_size})"
    elif batch == train_size:
        which = f"the one training minibatch ({train_size} training images)"
    else:
        which = f"the last training minibatch of each epoch ({train_size} training images in batches of {batch_size})"
    last = batch != batch_size and batch != train_size
    advice = (
        f"choose another {names['batch_size']}"
        + (f", set {names['drop_last']}" if last else "")
        + f", or use a larger {names['image_size']}"
    )
    check_batch_norm_batch(arch, input_size, batch, which, advice)
