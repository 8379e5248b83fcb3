"""Per-block latency tables: measured on this machine, stored with its fingerprint, summed to predict.

A table holds, for each *setting* (device, thread count, batch size), the median time of the stem,
of the head (final BN-ReLU, pooling and classifier) and of every candidate block type at every
block shape of an architecture. Blocks of the same shape (input/output widths, stride, input size)
are the same computation, so each distinct shape is timed once and every position of that shape
reads it (WRN-40-2: 6 shapes for 18 positions). Timing protocol: eval mode, `torch.inference_mode`,
a fixed thread count, `warmup` untimed calls then the median of `runs` timed calls, each timed call
synchronised on CUDA.

A network's predicted latency is stem + head + the sum of its blocks' entries. A table is reused
only on a machine with the same fingerprint (CPU model, cores, GPU name, library versions);
elsewhere it is refused with one line saying why and how to rebuild it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..networks.blocks import Block, BlockType, candidate_set, valid_types
from ..errors import BlockswapError
from ..networks.genotype import Genotype
from ..networks.layers import Classifier, build_sequence
from ..networks.models import Architecture, initialise, parse_arch
from ..provenance import read_verified

LATENCY_FORMAT = "blockswap-latency/1"
MIN_WARMUP = 10  # untimed calls before timing, at least (issue 13)
MIN_RUNS = 50  # timed calls whose median is kept, at least
DEVICES = ("cpu", "cuda")
DEFAULT_SETTING = "cpu/t1/b1"
US = 1e6  # microseconds per second: latency budgets and sampler columns are whole microseconds
# What a timing reads: wall time (what a deployment sees), or the CPU time of the calling thread,
# which on a one-thread CPU setting is the same work without the time other processes took the core
# away (a shared machine: a preempted 10 ms call is charged the other jobs' slices, a 0.3 ms block
# mostly is not, so wall-time tables there underestimate whole networks).
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


# --- settings and the machine -------------------------------------------------------------------


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
        raise BlockswapError(f"unknown latency setting {text!r}; allowed: cpu/tT/bB (T threads or 'all', batch B, "
                             "e.g. cpu/t1/b1) or cuda/bB")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


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
        record.update(gpu=torch.cuda.get_device_name() if available else None, cuda=torch.version.cuda,
                      cudnn=torch.backends.cudnn.version() if available else None)
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


def median_seconds(call: Callable[[], object], device: torch.device, warmup: int, runs: int,
                   clock: str = "wall") -> float:
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
        raise BlockswapError("the thread clock times one CPU thread: every setting must be cpu/t1/bB "
                             "(use --threads 1 and --device cpu, or the wall clock)")


def check_protocol(warmup: int, runs: int) -> None:
    if not isinstance(warmup, int) or warmup < MIN_WARMUP:
        raise BlockswapError(f"latency warm-up calls must be at least {MIN_WARMUP}, got {warmup}")
    if not isinstance(runs, int) or runs < MIN_RUNS:
        raise BlockswapError(f"latency timed runs must be at least {MIN_RUNS} (the median of them is kept), got {runs}")


def time_module(module: nn.Module, shape: tuple[int, ...], setting: Setting, warmup: int, runs: int,
                seed: int = 0, clock: str = "wall") -> float:
    """Median seconds of one forward pass of `module` (eval mode, inference mode) on a seeded input."""
    device = torch.device(setting.device)
    module = module.to(device).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)
    with cpu_threads(setting.threads if setting.device == "cpu" else torch.get_num_threads()), torch.inference_mode():
        return median_seconds(lambda: module(x), device, warmup, runs, clock)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    cin: int
    cout: int
    stride: int
    h: int
    w: int


def block_shapes(arch: Architecture, input_size: tuple[int, int]) -> list[Shape]:
    sizes = arch.feature_sizes(tuple(input_size))
    return [Shape(s.cin, s.cout, s.stride, h, w) for s, (h, w) in zip(arch.slots, sizes)]


def _head(arch: Architecture, num_classes: int) -> nn.Module:
    return nn.Sequential(build_sequence(arch.head), Classifier(arch.features, num_classes).build())


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    initialise(module, torch.Generator().manual_seed(seed))
    return module


def build_latency_table(arch: str | Architecture, candidates: str, input_size: tuple[int, int],
                        num_classes: int, settings: Sequence[Setting], warmup: int = MIN_WARMUP,
                        runs: int = MIN_RUNS, seed: int = 0,
                        progress: Callable[[str], None] | None = None, clock: str = "wall") -> dict:
    """Time the stem, the head and every candidate type at every distinct block shape of `arch`
    under each setting; return the table as a record (seconds), fingerprint included."""
    check_protocol(warmup, runs)
    if not settings:
        raise BlockswapError("a latency table needs at least one setting")
    check_clock(clock, settings)
    arch = parse_arch(arch)
    types = candidate_set(candidates)
    positions = block_shapes(arch, input_size)
    shapes = list(dict.fromkeys(positions))
    fits = [valid_types(types, s.cin, s.cout, s.stride) for s in shapes]
    start = time.perf_counter()
    stem_module, head_module = _seeded(build_sequence(arch.stem), seed), _seeded(_head(arch, num_classes), seed)
    stem_shape = (3, *input_size)
    last = arch.feature_sizes(tuple(input_size))[-1]
    stem, head = {}, {}
    times = [{t.name: {} for t in f} for f in fits]
    for setting in settings:
        b = setting.batch
        stem[setting.key] = time_module(stem_module, (b, *stem_shape), setting, warmup, runs, seed, clock)
        head[setting.key] = time_module(head_module, (b, arch.features, *last), setting, warmup, runs, seed, clock)
        for i, (shape, valid) in enumerate(zip(shapes, fits)):
            for block_type in valid:
                block = _seeded(Block(block_type, shape.cin, shape.cout, shape.stride), seed)
                times[i][block_type.name][setting.key] = time_module(
                    block, (b, shape.cin, shape.h, shape.w), setting, warmup, runs, seed, clock)
            if progress:
                progress(f"{setting.key}: shape {i + 1}/{len(shapes)} ({shape.cin}->{shape.cout}, stride "
                         f"{shape.stride}, {shape.h}x{shape.w}): {len(valid)} types")
    return {
        "format": LATENCY_FORMAT,
        "arch": arch.name,
        "candidates": candidates,
        "input_size": list(input_size),
        "num_classes": num_classes,
        "unit": "seconds",
        "clock": clock,
        "warmup": warmup,
        "runs": runs,
        "seed": seed,
        "settings": [s.key for s in settings],
        "fingerprint": machine_fingerprint(cuda=any(s.device == "cuda" for s in settings)),
        "stem": stem,
        "head": head,
        "shapes": [{"cin": s.cin, "cout": s.cout, "stride": s.stride, "h": s.h, "w": s.w, "times": t}
                   for s, t in zip(shapes, times)],
        "positions": [shapes.index(p) for p in positions],
        "build_seconds": round(time.perf_counter() - start, 3),
        "load_average": load_average(),  # other work on the machine while it was measured
    }


TABLE_KEYS = ("arch", "candidates", "input_size", "num_classes", "settings", "fingerprint", "stem", "head", "shapes",
              "positions")


def _seconds(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def table_problem(record: dict) -> str | None:
    """What is wrong with a latency table read from a file (a hand edit, a damaged copy), or None:
    every lookup and sum is then safe."""
    settings = record["settings"]
    if not (isinstance(settings, list) and settings and all(isinstance(k, str) for k in settings)):
        return "settings is not a list of setting names"
    for key in settings:
        try:
            Setting.parse(key)
        except BlockswapError:
            return f"unknown setting {str(key)[:40]!r}"
    try:
        arch = parse_arch(record["arch"]) if isinstance(record["arch"], str) else None
    except BlockswapError:
        arch = None
    if arch is None:
        return "arch is not an architecture"
    size = record["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                               and 1 <= v <= 1024 for v in size)):
        return "input_size is not two sizes in pixels"
    classes = record["num_classes"]
    if not (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1):
        return "num_classes is not a positive whole number"
    if record.get("clock", "wall") not in CLOCKS:
        return f"clock is not one of {', '.join(CLOCKS)}"
    if not isinstance(record["fingerprint"], dict):
        return "fingerprint is not a mapping"
    for part in ("stem", "head"):
        if not (isinstance(record[part], dict) and all(_seconds(record[part].get(k)) for k in settings)):
            return f"{part} lacks a positive time for every setting"
    shapes, positions = record["shapes"], record["positions"]
    if not (isinstance(shapes, list) and all(isinstance(s, dict) and isinstance(s.get("times"), dict) for s in shapes)):
        return "shapes is not a list of timed shapes"
    for shape in shapes:
        for name, times in shape["times"].items():
            if not (isinstance(times, dict) and all(_seconds(times.get(k)) for k in settings)):
                return f"{str(name)[:40]} lacks a positive time for every setting"
    if not (isinstance(positions, list) and len(positions) == arch.depth
            and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(shapes) for i in positions)):
        return f"positions is not one shape index per block of {arch.name}"
    return None


@dataclass
class LatencyTable:
    """A latency table read back (or just built): lookups, sums and the machine check."""

    record: dict
    source: str = "latency table"

    @classmethod
    def load(cls, path: str | Path, check_machine: bool = True) -> LatencyTable:
        """Read a table (its seal checked) and, unless `check_machine` is off, refuse it where this
        machine's fingerprint differs from the one it was measured on."""
        data, _ = read_verified(path, "latency table")
        try:
            record = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BlockswapError(f"{path} is not a latency table ({str(err).splitlines()[0]})") from None
        if not isinstance(record, dict) or record.get("format") != LATENCY_FORMAT:
            raise BlockswapError(f"{path} is not a latency table (format {LATENCY_FORMAT}); make one with "
                                 "`blockswap latency ARCH --out FILE`")
        missing = [key for key in TABLE_KEYS if key not in record]
        if missing:
            raise BlockswapError(f"{path} is a damaged latency table: it lacks {', '.join(missing)}")
        problem = table_problem(record)
        if problem:
            raise BlockswapError(f"{path} is a damaged latency table ({problem}); rebuild it with `blockswap latency "
                                 "... --force`")
        table = cls(record, str(path))
        if check_machine:
            table.check_machine()
        return table

    def check_machine(self) -> None:
        cuda = any(k.startswith("cuda") for k in self.record["settings"])
        why = fingerprint_mismatch(self.record["fingerprint"], machine_fingerprint(cuda))
        if why:
            raise BlockswapError(f"{self.source} was measured on another machine ({why}) and is only reused where it "
                                 f"was measured; rebuild it here: {self.rebuild_command()}")

    def rebuild_command(self) -> str:
        r = self.record
        threads = sorted({k.split("/")[1][1:] for k in r["settings"] if k.startswith("cpu")}) or ["1"]
        batches = sorted({int(k.rsplit("/b", 1)[1]) for k in r["settings"]})
        device = "auto" if any(k.startswith("cuda") for k in r["settings"]) else "cpu"
        return (f"blockswap latency {r['arch']} --candidates {r['candidates']} --image-size {r['input_size'][0]} "
                f"--classes {r['num_classes']} --threads {','.join(threads)} --batches "
                f"{','.join(map(str, batches))} --device {device} --clock {r.get('clock', 'wall')} --out {self.source} "
                "--force")

    @property
    def arch(self) -> Architecture:
        return parse_arch(self.record["arch"])

    def check_setting(self, key: str) -> str:
        key = Setting.parse(key).key
        if key not in self.record["settings"]:
            raise BlockswapError(f"{self.source} has no setting {key}; it has {', '.join(self.record['settings'])}")
        return key

    def check_network(self, arch: str, input_size, num_classes: int) -> None:
        """A table costs one architecture at one input size and class count: refuse another."""
        r = self.record
        if (parse_arch(arch).name, list(input_size), num_classes) != (r["arch"], r["input_size"], r["num_classes"]):
            raise BlockswapError(f"{self.source} times {r['arch']} at {r['input_size'][0]} px with {r['num_classes']} "
                                 f"classes, not {parse_arch(arch).name} at {input_size[0]} px with {num_classes}")

    def block_seconds(self, slot: int, block_type: str | BlockType, key: str) -> float:
        name = str(block_type)
        times = self.record["shapes"][self.record["positions"][slot]]["times"]
        if name not in times:
            raise BlockswapError(f"{self.source} has no time for {name} at block {slot} (it times the "
                                 f"{self.record['candidates']} types that fit there)")
        return float(times[name][key])

    def fixed_seconds(self, key: str) -> float:
        return float(self.record["stem"][key]) + float(self.record["head"][key])

    def predict(self, genotype: Genotype, key: str) -> float:
        """Predicted seconds of a whole network: stem + head + each block's entry."""
        key = self.check_setting(key)
        if len(genotype) != len(self.record["positions"]):
            raise BlockswapError(f"genotype has {len(genotype)} blocks, {self.record['arch']} has "
                                 f"{len(self.record['positions'])}")
        return self.fixed_seconds(key) + sum(self.block_seconds(i, t, key) for i, t in enumerate(genotype))

    def slot_microseconds(self, types: Sequence[Sequence[BlockType]], key: str) -> tuple[list[np.ndarray], int]:
        """Whole microseconds of each listed type at each slot (a sampler column) and of stem + head."""
        key = self.check_setting(key)
        columns = [np.array([round(self.block_seconds(i, t, key) * US) for t in slot], dtype=np.int64)
                   for i, slot in enumerate(types)]
        return columns, round(self.fixed_seconds(key) * US)


# --- whole networks ------------------------------------------------------------------------------


def measure_model(model: nn.Module, input_size: Sequence[int], setting: Setting, warmup: int = MIN_WARMUP,
                  runs: int = MIN_RUNS, seed: int = 0, in_channels: int = 3, clock: str = "wall") -> float:
    """Measured seconds of one forward pass of a whole network, timed as the table's parts are."""
    check_protocol(warmup, runs)
    check_clock(clock, [setting])
    return time_module(model, (setting.batch, in_channels, *input_size), setting, warmup, runs, seed, clock)


def draw_genotypes(types: Sequence[Sequence[BlockType]], samples: int, seed: int) -> list[Genotype]:
    """`samples` distinct genotypes, each block's type uniform over the types that fit it (seeded)."""
    rng = np.random.default_rng(seed)
    counts = np.array([len(t) for t in types])
    space = int(np.prod(counts.astype(float)))
    if samples < 1 or samples > space:
        raise BlockswapError(f"samples must be 1 to {space} (the networks of this space), got {samples}")
    seen: dict[bytes, Genotype] = {}
    while len(seen) < samples:
        choice = (rng.random(len(counts)) * counts).astype(np.int64)
        seen.setdefault(choice.astype(np.uint8).tobytes(), Genotype(tuple(types[s][i] for s, i in enumerate(choice))))
    return list(seen.values())


CHECK_COLUMNS = ["candidate", "genotype", "params", "macs", "predicted_ms", "measured_ms", "error_pct"]


def check_table(table: LatencyTable, key: str, samples: int, seed: int = 0, warmup: int = MIN_WARMUP,
                runs: int = MIN_RUNS, progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Predicted (sum of parts) against measured end-to-end latency of `samples` random students of
    the table's space, and how well the table and the cheap counts rank them: mean absolute
    percentage error, share within +-10 %, Kendall tau of predicted, params and MACs vs measured."""

    from ..networks.models import NetworkSpec, build_model
    from ..search.sampling import CostTable
    from .export import deployable

    key = table.check_setting(key)
    setting = Setting.parse(key)
    r = table.record
    size = tuple(r["input_size"])
    cost_table = CostTable.build(table.arch, candidate_set(r["candidates"]), size, r["num_classes"])
    rows = []
    for index, genotype in enumerate(draw_genotypes(cost_table.types, samples, seed)):
        cost = NetworkSpec(table.arch, genotype, r["num_classes"]).cost(size)
        model = deployable(build_model(table.arch, genotype, r["num_classes"], seed=seed))
        measured = measure_model(model, size, setting, warmup, runs, seed, clock=r.get("clock", "wall"))
        predicted = table.predict(genotype, key)
        rows.append([index, str(genotype), cost.params, cost.macs, predicted * 1e3, measured * 1e3,
                     100 * (predicted - measured) / measured])
        if progress:
            progress(index + 1)
    frame = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    summary = check_summary(frame)
    summary.update(setting=key, clock=r.get("clock", "wall"), samples=samples, seed=seed,
                   load_average=load_average())
    return frame, summary


def check_summary(frame: pd.DataFrame) -> dict:
    from scipy.stats import kendalltau

    error = frame["error_pct"].abs()

    def tau(column: str) -> float:
        if len(frame) < 2:
            return float("nan")
        return float(kendalltau(frame[column], frame["measured_ms"])[0])

    return {
        "mape_pct": round(float(error.mean()), 3),
        "within_10pct": round(float((error <= 10).mean()), 4),
        "max_abs_error_pct": round(float(error.max()), 3),
        "kendall_predicted": round(tau("predicted_ms"), 4),
        "kendall_params": round(tau("params"), 4),
        "kendall_macs": round(tau("macs"), 4),
        "measured_ms_range": [round(float(frame["measured_ms"].min()), 4), round(float(frame["measured_ms"].max()), 4)],
    }
