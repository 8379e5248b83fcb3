"""Exclusive locks on files (flock: the kernel releases a lock when its process ends, however it
ends), for the writers that must be alone: a scoring shard's `.partial` file and a training run's
folder."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import BlockswapError
from .provenance import make_parent


@contextmanager
def exclusive(path: Path, busy: str):
    """`path` opened for reading and appending under an exclusive lock; BlockswapError(`busy`) when
    another process holds it."""
    make_parent(path)
    while True:
        fh = open(path, "a+b")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise BlockswapError(busy) from None
        # The holder may have finished and removed the file between our open and our lock: lock
        # the file that is at the path now.
        try:
            current = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
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
