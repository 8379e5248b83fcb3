"""Provenance stamped into every result file, and atomic writes so no partial file is left behind."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import torch

from . import __version__

PACKAGE_ROOT = Path(__file__).resolve().parent
# A CSV, PNG or other file that cannot hold its own provenance gets it in a sidecar JSON beside it.
PROVENANCE_SUFFIX = ".provenance.json"
DIGEST_CHUNK = 1 << 20  # bytes read at a time when hashing an input


@functools.lru_cache(maxsize=1)  # fixed for the life of a process; every file stamps it
def code_version() -> str:
    """Package version, plus the git commit (and '-dirty') when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    if commit.returncode != 0 or not commit.stdout.strip():
        return __version__
    return f"{__version__}+{commit.stdout.strip()}"


def device_name(device: Optional[Union[str, torch.device]] = None) -> str:
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def provenance(seed: Optional[int] = None, device=None, seconds: Optional[float] = None, config=None) -> dict:
    record = {
        "code_version": code_version(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device_name(device),
    }
    if seed is not None:
        record["seed"] = seed
    if seconds is not None:
        record["wall_seconds"] = round(seconds, 3)
    if config is not None:
        record["config"] = config
    return record


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Union[str, Path], record) -> None:
    """A result record as indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def provenance_path(out: Union[str, Path]) -> Path:
    """The sidecar that carries the provenance of `out`."""
    out = Path(out)
    return out.with_name(out.name + PROVENANCE_SUFFIX)


def file_digest(path: Union[str, Path]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(DIGEST_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_digests(paths) -> dict[str, str]:
    """Each input file and its sha256, so a derived table or figure names exactly what it came from."""
    return {str(p): file_digest(p) for p in paths}


def write_sidecar(out: Union[str, Path], record: dict) -> None:
    write_json(provenance_path(out), record)
