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

Latency budgets and limits do not use that sum directly: they go through the setting's stored
calibration (`calibration`: a line fitted to whole-network timings, with its held-out error), and
a setting without one, or whose held-out error is above 10 %, refuses them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BlockswapError
from ..networks.architectures import Architecture, parse_arch
from ..networks.blocks import BlockType, candidate_set, parse_block, valid_types
from ..networks.genotype import Genotype
from ..networks.layers import Classifier
from ..networks.models import initialise
from ..networks.modules import build_block, build_layer, build_sequence
from ..numeric import is_positive_number
from ..provenance import read_verified
from . import calibration, timing
from .settings import Setting
from .timing import (
    CLOCKS,
    MIN_RUNS,
    MIN_WARMUP,
    US,
    check_clock,
    check_protocol,
    fingerprint_mismatch,
    load_average,
    machine_fingerprint,
)

LATENCY_FORMAT = "blockswap-latency/1"


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
    return nn.Sequential(build_sequence(arch.head), build_layer(Classifier(arch.features, num_classes)))


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    initialise(module, torch.Generator().manual_seed(seed))
    return module


def build_latency_table(
    arch: str | Architecture,
    candidates: str,
    input_size: tuple[int, int],
    num_classes: int,
    settings: Sequence[Setting],
    warmup: int = MIN_WARMUP,
    runs: int = MIN_RUNS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    clock: str = "wall",
    kept: Sequence[str] = (),
) -> dict:
    """Time the stem, the head and every candidate type at every distinct block shape of `arch`
    under each setting; return the table as a record (seconds), fingerprint included. `kept`: types
    timed besides the candidates (a pretrained teacher's own blocks that a student keeps)."""
    check_protocol(warmup, runs)
    if not settings:
        raise BlockswapError("a latency table needs at least one setting")
    check_clock(clock, settings)
    arch = parse_arch(arch)
    types = tuple(dict.fromkeys(candidate_set(candidates) + tuple(parse_block(name) for name in kept)))
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
        stem[setting.key] = timing.time_module(stem_module, (b, *stem_shape), setting, warmup, runs, seed, clock)
        head[setting.key] = timing.time_module(
            head_module, (b, arch.features, *last), setting, warmup, runs, seed, clock
        )
        for i, (shape, valid) in enumerate(zip(shapes, fits)):
            for block_type in valid:
                block = _seeded(build_block(block_type, shape.cin, shape.cout, shape.stride), seed)
                times[i][block_type.name][setting.key] = timing.time_module(
                    block, (b, shape.cin, shape.h, shape.w), setting, warmup, runs, seed, clock
                )
            if progress:
                progress(
                    f"{setting.key}: shape {i + 1}/{len(shapes)} ({shape.cin}->{shape.cout}, stride "
                    f"{shape.stride}, {shape.h}x{shape.w}): {len(valid)} types"
                )
    return {
        "format": LATENCY_FORMAT,
        "arch": arch.name,
        "candidates": candidates,
        **({"kept": list(kept)} if kept else {}),
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
        "shapes": [
            {"cin": s.cin, "cout": s.cout, "stride": s.stride, "h": s.h, "w": s.w, "times": t}
            for s, t in zip(shapes, times)
        ],
        "positions": [shapes.index(p) for p in positions],
        "build_seconds": round(time.perf_counter() - start, 3),
        "load_average": load_average(),  # other work on the machine while it was measured
    }


TABLE_KEYS = (
    "arch",
    "candidates",
    "input_size",
    "num_classes",
    "settings",
    "fingerprint",
    "stem",
    "head",
    "shapes",
    "positions",
)


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
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in size)
    ):
        return "input_size is not two sizes in pixels"
    classes = record["num_classes"]
    if not (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1):
        return "num_classes is not a positive whole number"
    if record.get("clock", "wall") not in CLOCKS:
        return f"clock is not one of {', '.join(CLOCKS)}"
    if not isinstance(record["fingerprint"], dict):
        return "fingerprint is not a mapping"
    if not isinstance(record.get("calibration", {}), dict) or not set(record.get("calibration", {})) <= set(settings):
        return "calibration is not a mapping of the table's settings"
    for part in ("stem", "head"):
        if not (isinstance(record[part], dict) and all(is_positive_number(record[part].get(k)) for k in settings)):
            return f"{part} lacks a positive time for every setting"
    shapes, positions = record["shapes"], record["positions"]
    if not (isinstance(shapes, list) and all(isinstance(s, dict) and isinstance(s.get("times"), dict) for s in shapes)):
        return "shapes is not a list of timed shapes"
    for shape in shapes:
        for name, times in shape["times"].items():
            if not (isinstance(times, dict) and all(is_positive_number(times.get(k)) for k in settings)):
                return f"{str(name)[:40]} lacks a positive time for every setting"
    if not (
        isinstance(positions, list)
        and len(positions) == arch.depth
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(shapes) for i in positions)
    ):
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
            raise BlockswapError(
                f"{path} is not a latency table (format {LATENCY_FORMAT}); make one with "
                "`blockswap latency ARCH --out FILE`"
            )
        missing = [key for key in TABLE_KEYS if key not in record]
        if missing:
            raise BlockswapError(f"{path} is a damaged latency table: it lacks {', '.join(missing)}")
        problem = table_problem(record)
        if problem:
            raise BlockswapError(
                f"{path} is a damaged latency table ({problem}); rebuild it with `blockswap latency ... --force`"
            )
        table = cls(record, str(path))
        if check_machine:
            table.check_machine()
        return table

    def check_machine(self) -> None:
        cuda = any(k.startswith("cuda") for k in self.record["settings"])
        why = fingerprint_mismatch(self.record["fingerprint"], machine_fingerprint(cuda))
        if why:
            raise BlockswapError(
                f"{self.source} was measured on another machine ({why}) and is only reused where it "
                f"was measured; rebuild it here: {self.rebuild_command()}"
            )

    def rebuild_command(self) -> str:
        r = self.record
        threads = sorted({k.split("/")[1][1:] for k in r["settings"] if k.startswith("cpu")}) or ["1"]
        batches = sorted({int(k.rsplit("/b", 1)[1]) for k in r["settings"]})
        device = "auto" if any(k.startswith("cuda") for k in r["settings"]) else "cpu"
        return (
            f"blockswap latency {r['arch']} --candidates {r['candidates']} --image-size {r['input_size'][0]} "
            f"--classes {r['num_classes']} --threads {','.join(threads)} --batches "
            f"{','.join(map(str, batches))} --device {device} --clock {r.get('clock', 'wall')} --out {self.source} "
            "--force"
        )

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
            raise BlockswapError(
                f"{self.source} times {r['arch']} at {r['input_size'][0]} px with {r['num_classes']} "
                f"classes, not {parse_arch(arch).name} at {input_size[0]} px with {num_classes}"
            )

    def block_seconds(self, slot: int, block_type: str | BlockType, key: str) -> float:
        name = str(block_type)
        times = self.record["shapes"][self.record["positions"][slot]]["times"]
        if name not in times:
            raise BlockswapError(
                f"{self.source} has no time for {name} at block {slot} (it times the "
                f"{self.record['candidates']} types that fit there)"
            )
        return float(times[name][key])

    def fixed_seconds(self, key: str) -> float:
        return float(self.record["stem"][key]) + float(self.record["head"][key])

    def predict(self, genotype: Genotype, key: str) -> float:
        """Predicted seconds of a whole network: stem + head + each block's entry."""
        key = self.check_setting(key)
        if len(genotype) != len(self.record["positions"]):
            raise BlockswapError(
                f"genotype has {len(genotype)} blocks, {self.record['arch']} has {len(self.record['positions'])}"
            )
        return self.fixed_seconds(key) + sum(self.block_seconds(i, t, key) for i, t in enumerate(genotype))

    # --- the calibration of a setting, and the budgets that go through it ---------------------------

    def calibrate_command(self, key: str, samples: int = calibration.DEFAULT_NETWORKS) -> str:
        return f"blockswap latency-calibrate {self.source} --setting {key} --samples {samples}"

    def calibration(self, key: str) -> dict | None:
        """The stored calibration of setting `key`, checked against its own timings and this table's
        block times, or None where the setting has none."""
        key = self.check_setting(key)
        entry = self.record.get("calibration", {}).get(key)
        if entry is None:
            return None
        problem = calibration.entry_problem(entry, lambda genotype: self.predict(Genotype.parse(genotype), key))
        if problem:
            raise BlockswapError(
                f"{self.source} has a damaged calibration of {key} ({problem}); measure it again: "
                f"{self.calibrate_command(key)}"
            )
        return entry

    def budget_calibration(self, key: str) -> dict:
        """The calibration a latency budget or limit in setting `key` goes through. Refused, in one line
        with the fix, where the setting has none (the budget would go unchecked) or where its held-out
        error is above `calibration.MAX_HELD_OUT_MAPE_PCT`."""
        key = self.check_setting(key)
        entry = self.calibration(key)
        if entry is None:
            raise BlockswapError(
                f"{self.source} has no calibration of {key}, so a latency budget there would be unchecked; "
                f"calibrate it against whole networks on this machine ({self.calibrate_command(key)}) or "
                "budget in params or macs"
            )
        held, limit, count = entry["held_out"], calibration.MAX_HELD_OUT_MAPE_PCT, len(entry["networks"])
        if held["mape_pct"] > limit:
            raise BlockswapError(
                f"latency budgets in {key} are refused: {self.source} predicts whole networks there with a "
                f"held-out error of {held['mape_pct']:.1f} % (MAPE over {count} validation "
                f"networks, {held['within_10pct']:.0%} within +-10 %), above {limit:g} %; measure that setting "
                f"again on a quiet machine with more networks ({self.calibrate_command(key, max(100, 2 * count))}), "
                "budget in params or macs, or use another batch setting"
            )
        return entry

    def calibrated_seconds(self, genotype: Genotype, key: str) -> float:
        """A whole network's time as the setting's calibration predicts it from the table's sum."""
        entry = self.calibration(key)
        if entry is None:
            raise BlockswapError(f"{self.source} has no calibration of {key}; {self.calibrate_command(key)}")
        return calibration.apply(entry, self.predict(genotype, key))

    def slot_microseconds(self, types: Sequence[Sequence[BlockType]], key: str) -> tuple[list[np.ndarray], int]:
        """The calibrated latency as sampler columns, in whole microseconds: each listed type at each
        slot (slope x its entry) and the fixed part (slope x (stem + head) + intercept), so that a
        network's column total is its calibrated time. Only for a setting whose calibration holds."""
        key = self.check_setting(key)
        entry = self.budget_calibration(key)
        slope = entry["slope"]
        columns = [
            np.array([round(slope * self.block_seconds(i, t, key) * US) for t in slot], dtype=np.int64)
            for i, slot in enumerate(types)
        ]
        return columns, round(calibration.apply(entry, self.fixed_seconds(key)) * US)
