"""One GPU per job on a multi-GPU workstation.

Snakemake's `--resources gpu=G` caps how many GPU jobs run at once but hands out counts, not
device ids. Each job therefore claims a free device itself: an exclusive `flock` on a lock file per
device. The kernel drops the lock when the process ends, normally, on failure or when killed, so
a slot is never leaked. Under SLURM every job sees only its own GPU(s), and nothing is claimed.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .errors import BlockswapError

LOCK_DIR_ENV = "BLOCKSWAP_GPU_LOCK_DIR"
POLL_SECONDS = 0.5
WAIT_SECONDS = 3600  # a job waits at most this long for a free device

_held: IO | None = None  # the claimed slot's lock file, kept open for the process's lifetime


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"blockswap-gpu-locks-{os.getuid()}")


def try_claim(device_ids: Sequence[str], lock_dir: Path) -> tuple[str, IO] | None:
    """Claim the first free device without waiting; None when all are taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for device in device_ids:
        handle = open(lock_dir / f"gpu-{device}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return device, handle
    return None


def claim(device_ids: Sequence[str], lock_dir: Path | None = None, wait_seconds: float = WAIT_SECONDS) -> str:
    """Claim a free device id for the rest of this process (waiting for one if need be)."""
    global _held
    if _held is not None:
        raise BlockswapError("this process already holds a GPU slot")
    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    deadline = time.monotonic() + wait_seconds
    while True:
        found = try_claim(device_ids, lock_dir)
        if found is not None:
            device, _held = found
            return device
        if time.monotonic() > deadline:
            raise BlockswapError(
                f"no free GPU among {', '.join(device_ids)} after {wait_seconds:.0f} s (locks in {lock_dir}); "
                "run with --resources gpu=N where N is the number of GPUs"
            )
        time.sleep(POLL_SECONDS)


def release() -> None:
    global _held
    if _held is not None:
        _held.close()
        _held = None
