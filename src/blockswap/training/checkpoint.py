"""Saving and loading model files and training checkpoints, safely.

Files hold tensors and plain data only and are read with `torch.load(weights_only=True)`: a file
that carries pickled code is refused, and a corrupt or truncated one is one clear error. Writes go
through a temporary file and a rename, so a kill never leaves half a checkpoint. A model file is a
result and is sealed (provenance.seal); a checkpoint is rewritten every epoch and read only by the
run that wrote it, so it is not.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ..errors import BlockswapError
from ..networks.models import Network, build_model
from ..provenance import atomic_write, seal, verify
from .run_files import MODEL_FILE, check_recorded_file
from .snip import apply_masks

MODEL_FORMAT = "blockswap-model/1"
CHECKPOINT_FORMAT = "blockswap-checkpoint/1"
# torch.save writes a zip archive; anything else (a CSV, a legacy raw pickle) is not one of ours.
ZIP_MAGIC = b"PK\x03\x04"


class _Sink:
    """The file torch.save writes to, keeping the first error a write raised: torch reports a
    failed write (a full disk) as a RuntimeError about stream positions, not the OSError it was."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.fh.flush()


def _save(obj, tmp: Path) -> None:
    with open(tmp, "wb") as fh:
        sink = _Sink(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            raise sink.error from None
        fh.flush()
        # On the disk before the rename: a crash never leaves an empty checkpoint where a resume reads.
        os.fsync(fh.fileno())


def atomic_save(obj, path: str | Path) -> None:
    """`obj` written with torch.save through a temporary file and a rename. A write the system
    refuses (a full disk) is an OSError naming `path`, and `path` is left as it was."""
    atomic_write(path, lambda tmp: _save(obj, tmp))


def safe_load(path: str | Path, expected_format: str) -> dict:
    """Load a file written by this package; anything else is a clear `BlockswapError`."""
    path = Path(path)
    if not path.is_file():
        raise BlockswapError(f"{path} does not exist")
    verify(path)
    with open(path, "rb") as fh:
        if fh.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise BlockswapError(f"{path} is not a {expected_format} file (not a zip archive written by torch.save)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise BlockswapError(
            f"{path} was refused: it carries Python objects other than tensors and plain data (possibly code)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BlockswapError(f"{path} is corrupt or truncated ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise BlockswapError(f"{path} is not a {expected_format} file")
    return data


def model_record(model: Network, input_size, dataset: str, masks: dict | None = None) -> dict:
    """Everything needed to rebuild the model; `masks` (parameter name -> 0/1 tensor) are a pruned
    network's, kept so that whoever loads it knows which weights are pruned."""
    spec = model.spec
    return {
        "format": MODEL_FORMAT,
        "arch": spec.arch.name,
        "genotype": spec.genotype.names,
        "num_classes": spec.num_classes,
        "input_size": list(input_size),
        "dataset": dataset,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "masks": None if masks is None else {k: v.detach().cpu() for k, v in masks.items()},
    }


def save_model(model: Network, path: str | Path, input_size, dataset: str, masks: dict | None = None) -> None:
    atomic_save(model_record(model, input_size, dataset, masks), path)
    seal(path)


def load_model(path: str | Path, recorded: bool = True) -> tuple[Network, dict]:
    """Rebuild a model from a model file (or a training folder holding `model.pt`). `recorded`:
    check, after its contents, that it is the file its folder's metrics.json records."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    record = safe_load(path, MODEL_FORMAT)
    size = record.get("input_size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise BlockswapError(
            f"{path} holds a malformed model record (input_size {str(size)[:40]}, expected two positive whole numbers)"
        )
    try:
        model = build_model(record["arch"], record["genotype"], record["num_classes"])
        model.load_state_dict(record["state_dict"])
        if record.get("masks") is not None:
            # A pruned model's weights are already zero where masked; applying the masks again
            # checks that they fit the network.
            apply_masks(model, record["masks"])
    except KeyError as err:
        raise BlockswapError(f"{path} lacks {err}, needed to rebuild the model") from None
    except (TypeError, AttributeError) as err:  # a field of the wrong type (a hand-edited or foreign file)
        raise BlockswapError(f"{path} holds a malformed model record ({_first_line(err)})") from None
    except BlockswapError as err:
        raise BlockswapError(f"{path}: {err}") from None
    except RuntimeError as err:
        # load_state_dict's first line only says that loading failed; the next names the tensor.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else _first_line(err)
        raise BlockswapError(f"{path}: weights do not fit {record['arch']} ({detail})") from None
    if recorded:
        check_recorded_file(path, "model_sha256")
    return model, record


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
