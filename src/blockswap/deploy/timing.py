"""How a latency is measured: the timing protocol, the settings it runs under and the machine it
describes.

A *setting* is a device, a CPU thread count and a batch size (`cpu/t1/b1`, `cuda/b128`). Every
timing, of a block or of a whole network, is taken the same way: eval mode, `torch.inference_mode`,
the setting's thread count, `warmup` untimed calls, then the median of `runs` timed calls, each
synchronised on CUDA. A measurement only describes the machine it was taken on, so tables carry a
fingerprint of it (CPU model, cores, GPU, library versions) that readers compare.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BlockswapError
from .settings import DEVICES, Setting, available_cores

MIN_WARMUP = 10  # untimed calls before timing, at least
MIN_RUNS = 50  # timed calls whose median is kept, at least
US = 1e6  # microseconds per second: latency budgets and sampler columns are whole microseconds
# What a timing reads: wall time (what a deployment sees), or the CPU time of the calling thread,
# which on a one-thread CPU setting is the same work without the time other processes took the core
# away (a shared machine: a preempted 10 ms call is charged the other jobs' slices, a 0.3 ms block
# mostly is not, so wall-time tables there underestimate whole networks).
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


# --- settings and the machine -------------------------------------------------------------------


def settings_from(device: str, threads: Iterable[int | str], batches: Iterable[int]) -> list[Setting]:
    """Every (threads, batch) on the CPU, plus every batch on CUDA when `device` is cuda or auto and a
    GPU is present (auto without one: CPU only; cuda without one: an error)."""
    if device not in (*DEVICES, "auto"):
        raise BlockswapError(f"latency device must be one of cpu, cuda, auto, got {device!r}")
    batches = sorted(set(batches))
    if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
        raise BlockswapError(f"latency batches must be positive whole numbers, got {batches}")
    counts = []
    for t in threads:
        if t == "all":
            counts.append(available_cores())
        elif isinstance(t, int) and not isinstance(t, bool) and t >= 1:
            counts.append(t)
        else:
            raise BlockswapError(f"latency threads must be positive whole numbers or 'all', got {t!r}")
    if not counts:
        raise BlockswapError("latency threads: give at least one thread count (e.g. 1,all)")
    settings = [Setting("cpu", t, b) for t in sorted(set(counts)) for b in batches]
    if device == "cuda" and not torch.cuda.is_available():
        raise BlockswapError("latency device cuda was asked for but no CUDA GPU is available; use cpu or auto")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        settings += [Setting("cuda", 0, b) for b in batches]
    return settings


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(cuda: bool = False) -> dict:
    """What a latency depends on besides the network: the processor, how many cores this process
    has, and the libraries that run the kernels (and, for a CUDA table, the GPU and its libraries)."""
    record = {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "numpy": np.__version__,
    }
    if cuda:
        available = torch.cuda.is_available()
        record.update(
            gpu=torch.cuda.get_device_name() if available else None,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version() if available else None,
        )
    return record


def fingerprint_mismatch(recorded: dict, current: dict) -> str | None:
    """The first way this machine differs from the one a table was measured on, or None."""
    for key in recorded:
        if recorded.get(key) != current.get(key):
            return f"{key} {recorded.get(key)!r} there, {current.get(key)!r} here"
    return None


def load_average() -> list | None:
    """The 1, 5 and 15 minute load averages (runnable processes), where the system says them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@contextmanager
def cpu_threads(count: int):
    """Run with exactly `count` intra-op threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- timing --------------------------------------------------------------------------------------


def median_seconds(
    call: Callable[[], object], device: torch.device, warmup: int, runs: int, clock: str = "wall"
) -> float:
    """Median time of `call()` on `clock` over `runs` calls after `warmup` untimed ones, each timed
    call synchronised on CUDA (a kernel launch returns before the kernel ends)."""
    cuda = device.type == "cuda"
    now = CLOCKS[clock]
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(runs):
        start = now()
        call()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(now() - start)
    return statistics.median(times)


def check_clock(clock: str, settings: Iterable[Setting]) -> None:
    if clock not in CLOCKS:
        raise BlockswapError(f"latency clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "thread" and any(s.device != "cpu" or s.threads != 1 for s in settings):
        raise BlockswapError(
            "the thread clock times one CPU thread: every setting must be cpu/t1/bB "
            "(use --threads 1 and --device cpu, or the wall clock)"
        )


def check_protocol(warmup: int, runs: int) -> None:
    if not isinstance(warmup, int) or warmup < MIN_WARMUP:
        raise BlockswapError(f"latency warm-up calls must be at least {MIN_WARMUP}, got {warmup}")
    if not isinstance(runs, int) or runs < MIN_RUNS:
        raise BlockswapError(f"latency timed runs must be at least {MIN_RUNS} (the median of them is kept), got {runs}")


def time_module(
    module: nn.Module,
    shape: tuple[int, ...],
    setting: Setting,
    warmup: int,
    runs: int,
    seed: int = 0,
    clock: str = "wall",
) -> float:
    """Median seconds of one forward pass of `module` (eval mode, inference mode) on a seeded input."""
    device = torch.device(setting.device)
    module = module.to(device).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)
    with cpu_threads(setting.threads if setting.device == "cpu" else torch.get_num_threads()), torch.inference_mode():
        return median_seconds(lambda: module(x), device, warmup, runs, clock)


def measure_model(
    model: nn.Module,
    input_size: Sequence[int],
    setting: Setting,
    warmup: int = MIN_WARMUP,
    runs: int = MIN_RUNS,
    seed: int = 0,
    in_channels: int = 3,
    clock: str = "wall",
) -> float:
    """Measured seconds of one forward pass of a whole network, timed as the table's parts are."""
    check_protocol(warmup, runs)
    check_clock(clock, [setting])
    return time_module(model, (setting.batch, in_channels, *input_size), setting, warmup, runs, seed, clock)
