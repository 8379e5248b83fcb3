"""Where and how a latency is measured (device, CPU threads, batch size), and the cores this
process may use: what checking a configuration needs, without torch (timing.py measures)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import BlockswapError

DEVICES = ("cpu", "cuda")
# A trained network's measured end-to-end latency: the key of `blockswap measure`'s file, and the
# column of the students table that holds it.
LATENCY_COLUMN = "latency_ms"


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which a batch scheduler narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Setting:
    """Where and how a latency is measured: device, CPU threads (0 on CUDA: not fixed), batch size."""

    device: str
    threads: int
    batch: int

    @property
    def key(self) -> str:
        return f"cuda/b{self.batch}" if self.device == "cuda" else f"cpu/t{self.threads}/b{self.batch}"

    @classmethod
    def parse(cls, text: str) -> Setting:
        """`cpu/t1/b1`, `cpu/tall/b128` (all cores of this machine) or `cuda/b1`."""
        parts = str(text).strip().lower().split("/")
        try:
            if parts[0] == "cuda" and len(parts) == 2 and parts[1].startswith("b"):
                return cls("cuda", 0, _positive(parts[1][1:]))
            if parts[0] == "cpu" and len(parts) == 3 and parts[1].startswith("t") and parts[2].startswith("b"):
                threads = available_cores() if parts[1] == "tall" else _positive(parts[1][1:])
                return cls("cpu", threads, _positive(parts[2][1:]))
        except ValueError:
            pass
        raise BlockswapError(
            f"unknown latency setting {text!r}; allowed: cpu/tT/bB (T threads or 'all', batch B, "
            "e.g. cpu/t1/b1) or cuda/bB"
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value
