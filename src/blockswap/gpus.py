"""One GPU per job on a multi-GPU workstation.

Snakemake's `--resources gpu=G` caps how many GPU jobs run at once but hands out counts, not
device ids. Each job therefore claims a free device itself: an exclusive `flock` on a lock file per
device. The kernel drops the lock when the process ends, normally, on failure or when killed, so
a slot is never leaked. Under SLURM every job sees only its own GPU(s), and nothing is claimed.

The lock folder's name is predictable (it sits in the shared temporary folder), so it is used only
if it is the user's own: a real folder, not a symbolic link, owned by the user and writable by no
one else. Lock files are opened without following symbolic links and never truncated through one,
so no one else can make a claim overwrite a file of their choosing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .errors import BlockswapError

LOCK_DIR_ENV = "BLOCKSWAP_GPU_LOCK_DIR"
LOCK_DIR_MODE = 0o700
LOCK_FILE_MODE = 0o600
POLL_SECONDS = 0.5
WAIT_SECONDS = 3600  # a job waits at most this long for a free device

_held: IO | None = None  # the claimed slot's lock file, kept open for the process's lifetime


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"blockswap-gpu-locks-{os.getuid()}")


def _refuse(lock_dir: Path, problem: str) -> BlockswapError:
    return BlockswapError(
        f"GPU lock folder {lock_dir} {problem}; it is not used for GPU locks: remove it, or set "
        f"{LOCK_DIR_ENV} to a folder of your own that no one else can write"
    )


def ensure_lock_dir(lock_dir: Path) -> None:
    """Make `lock_dir` (mode 0700) or check the one that is there: a folder, not a symbolic link,
    owned by this user and not writable by group or others; else one clear error."""
    lock_dir = Path(lock_dir)
    lock_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(lock_dir, LOCK_DIR_MODE)
    except FileExistsError:
        pass
    info = os.lstat(lock_dir)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(lock_dir, "is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(lock_dir, "is not a folder")
    if info.st_uid != os.geteuid():
        raise _refuse(lock_dir, f"belongs to another user (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(lock_dir, f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})")


def _open_lock(path: Path) -> IO:
    """The lock file `path`, opened for reading and writing (created if need be, never truncated),
    refused if it is a symbolic link, not a regular file or not this user's."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP and path.is_symlink():
            raise BlockswapError(
                f"GPU lock file {path} is a symbolic link; it is not written through: remove it"
            ) from None
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    if problem:
        os.close(fd)
        raise BlockswapError(f"GPU lock file {path} {problem}; it is not used: remove it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+")


def try_claim(device_ids: Sequence[str], lock_dir: Path) -> tuple[str, IO] | None:
    """Claim the first free device without waiting; None when all are taken."""
    ensure_lock_dir(lock_dir)
    for device in device_ids:
        handle = _open_lock(Path(lock_dir) / f"gpu-{device}.lock")
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
