"""Exclusive locks on files (flock: the kernel releases a lock when its process ends, however it
ends), for the writers that must be alone: a scoring shard's `.partial` file and a training run's
folder."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import BlockswapError
from .provenance import FILE_MODE, make_parent


def open_locked_file(path: Path):
    """`path` opened for reading and appending (created if need be), never through a symbolic link:
    a link (planted, or left by a copy) would have every appended line written into whatever it
    points at. A link or anything but a regular file is one clear error."""
    try:
        fd = os.open(
            path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, FILE_MODE
        )
    except OSError as err:
        if err.errno == errno.ELOOP and Path(path).is_symlink():
            raise BlockswapError(
                f"{path} is a symbolic link; it is never written through: remove it (rm {path}) and rerun"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BlockswapError(f"{path} is not a regular file; remove it (rm -r {path}) and rerun")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a+b")


@contextmanager
def exclusive(path: Path, busy: str):
    """`path` opened for reading and appending under an exclusive lock (never through a symbolic
    link: open_locked_file); BlockswapError(`busy`) when another process holds it."""
    make_parent(path)
    while True:
        fh = open_locked_file(path)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise BlockswapError(busy) from None
        # The holder may have finished and removed the file between our open and our lock (or it
        # was replaced): lock the file that is at the path now.
        try:
            current = os.lstat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        fh.close()
    try:
        yield fh
    finally:
        fh.close()


@contextmanager
def run_lock(out: Path):
    """Hold a training run's folder for the run's whole life: a second trainer of the same folder
    (a job started again beside an orphaned one) stops at once with one line. The lock is a hidden
    file beside the folder, so a run that stops before its first checkpoint leaves no folder."""
    out = Path(out)
    lock = out.parent / f".{out.name}.lock"
    with exclusive(lock, f"another process is training into {out} ({lock} is locked); wait for it or stop it"):
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
