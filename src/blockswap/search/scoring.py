"""Scoring sampled candidates (sharded, resumable, repeatable) and selecting the winner.

Determinism beyond the released code: by default every candidate is measured on the *same*
seeded minibatch(es), and candidate i is initialised from a seed derived from (seed, i), so its
score is the same whichever shard or machine computes it. `minibatch="per-candidate"` gives the
released code's behaviour (a fresh random minibatch per candidate), still seeded.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..data.loader import training_batches
from ..data.splits import Dataset
from ..errors import BlockswapError
from ..networks.architectures import parse_arch
from ..networks.genotype import Genotype
from ..networks.models import Network, build_model
from ..provenance import (
    check_result_name,
    json_digest,
    provenance,
    write_result_text,
)
from ..seeds import derive_seed
from ..validation import parse_csv
from .bank import ModuleBank
from .measure import table1_mode
from .proxies import PROXIES, parse_proxies
from .proxies.candidate import measure_candidate
from .sampling import CANDIDATE_COLUMNS
from .score_files import (
    PARTIAL_SUFFIX,
    TIMING_PREFIX,
    is_timing,
    locked_partial,
    partial_preamble,
    proxy_column,
    score_kind,
)

MINIBATCH_MODES = ("shared", "per-candidate")
# `--memory-format` -> ScoringSettings.channels_last (None: chosen per device, `ScoringSettings.on`).
MEMORY_FORMATS = {"auto": None, "channels-last": True, "nchw": False}


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' with 0 <= i < n: the i-th of n contiguous, near-equal parts of the candidates."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BlockswapError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise BlockswapError(f"shard {text!r} is out of range: need n >= 1 and 0 <= i < n")
    return i, n


def shard_of(frame: pd.DataFrame, shard: tuple[int, int]) -> pd.DataFrame:
    i, n = shard
    ordered = frame.sort_values("candidate", kind="stable")
    bounds = np.linspace(0, len(ordered), n + 1).round().astype(int)
    return ordered.iloc[bounds[i] : bounds[i + 1]]


@dataclass
class ScoringSettings:
    arch: str
    dataset: str
    num_classes: int
    image_size: int
    batch_size: int = 128
    seed: int = 0
    proxies: list[str] = field(default_factory=lambda: ["fisher"])
    minibatches: list[int] = field(default_factory=lambda: [1])
    minibatch: str = "shared"
    # The memory layout: it changes float rounding, so it is part of the settings a score depends
    # on. None picks the faster one for the scoring device (`on`): NHWC on the CPU (mkldnn's
    # convolutions run ~1.5x faster, bench/fisher_scoring.py), NCHW on a GPU (58 against 67 ms
    # per WRN-40-2 candidate on an H200); True / False force NHWC / NCHW.
    channels_last: bool | None = None
    # TF32 convolutions (PyTorch's default on Ampere and newer GPUs) moved Fisher potentials by up
    # to 5.6 % relative from float32 on an H100 (bench/gpu.sh), enough to reorder close candidates:
    # scoring runs in true float32 unless asked. No effect on the CPU.
    tf32: bool = False
    # How Table 1's metrics after k minibatches are read (search/fisher.py): "accumulated" adds
    # the k passes up, as the paper's ablation; "snapshot" reads pass k alone. Equal at k = 1.
    table1_mode: str = "accumulated"
    # The input normalisation (per-channel mean and std of 0..1 pixels) when it is not the dataset's
    # own: a pretrained teacher's, with which the students will be trained.
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self):
        if self.channels_last not in (None, True, False):
            raise BlockswapError(f"channels_last must be true, false or null (per device), got {self.channels_last!r}")
        if self.minibatch not in MINIBATCH_MODES:
            raise BlockswapError(f"minibatch mode must be one of {', '.join(MINIBATCH_MODES)}, got {self.minibatch!r}")
        table1_mode(self.table1_mode)
        if self.batch_size < 1:
            raise BlockswapError(f"batch size must be at least 1, got {self.batch_size}")
        self.proxies = [p.name for p in parse_proxies(self.proxies)]
        if (self.mean is None) != (self.std is None):
            raise BlockswapError("a scoring normalisation needs both mean and std, or neither (the dataset's own)")
        if self.mean is not None:
            self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]
        self.minibatches = sorted(set(int(k) for k in self.minibatches))
        if self.minibatches[0] < 1:
            raise BlockswapError(f"minibatch counts must be positive, got {self.minibatches}")

    def on(self, device: torch.device) -> ScoringSettings:
        """These settings as scoring on `device` applies them: the memory layout resolved (NHWC
        on the CPU, NCHW elsewhere), so that a scores file and its fingerprint name the layout
        its values were computed in."""
        if self.channels_last is not None:
            return self
        return replace(self, channels_last=device.type == "cpu")

    def extra_columns(self) -> list[tuple[str, int, str]]:
        """(proxy, k, column) of every measurement beyond the Fisher potential at k = 1 (which is
        the `fisher` and `fisher_blocks` columns): `<proxy>@<k>`."""
        return [
            (p, k, proxy_column(p, k))
            for k in self.minibatches
            for p in self.proxies
            if (p, k) != ("fisher", 1) and not PROXIES[p].cost_column
        ]

    def columns(self) -> list[str]:
        """The score columns. A cost-column control (params, macs) adds none: the candidates'
        own column is its score."""
        return ["fisher", "fisher_blocks"] + [column for _, _, column in self.extra_columns()]

    def timing_columns(self) -> list[str]:
        """`seconds_<proxy>` per pass: `seconds_fisher` is the Fisher potential's pass, which also
        measures Table 1's accuracy, l2_norm and grad_norm; every other proxy has its own."""
        own = [p for p in self.proxies if PROXIES[p].own_pass]
        return [f"{TIMING_PREFIX}{p}" for p in ["fisher"] + own]


class Scorer:
    """Measures candidates one by one; the shared minibatches are drawn once and reused.

    Each candidate is assembled from the module bank (search/bank.py) and re-initialised in
    place: the same values as building it afresh, without the per-candidate host work.
    `fresh=True` builds every candidate with `build_model` instead, the reference the bank is
    tested and timed against."""

    def __init__(self, settings: ScoringSettings, data: Dataset, device: torch.device, fresh: bool = False):
        settings = settings.on(device)
        if settings.mean is not None:
            data = replace(data, mean=tuple(settings.mean), std=tuple(settings.std))
        self.settings, self.data, self.device = settings, data, device
        self.arch = parse_arch(settings.arch)
        self.proxies = parse_proxies(settings.proxies)
        self.points = settings.minibatches if 1 in settings.minibatches else [1] + settings.minibatches
        self.shared = None
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        # Process-wide switches: a scoring process scores with one precision.
        torch.backends.cudnn.allow_tf32 = settings.tf32
        torch.backends.cuda.matmul.allow_tf32 = settings.tf32
        if settings.minibatch == "shared":
            stream = training_batches(data, settings.batch_size, settings.seed, device)
            self.shared = [self.formatted(b) for b in islice(stream, max(self.points))]
        self.bank = None if fresh else ModuleBank(self.arch, settings.num_classes, device, self.memory_format)

    def formatted(self, batch):
        images, labels = batch
        return images.contiguous(memory_format=self.memory_format), labels

    def batches(self, candidate: int):
        if self.shared is not None:
            return iter(self.shared)
        seed = derive_seed(self.settings.seed, candidate, 1)
        return map(self.formatted, training_batches(self.data, self.settings.batch_size, seed, self.device))

    def network(self, candidate: int, genotype: Genotype) -> Network:
        """Candidate `candidate` freshly initialised on the device, in the scoring layout."""
        seed = derive_seed(self.settings.seed, candidate)
        if self.bank is not None:
            return self.bank.network(genotype, seed)
        model = build_model(self.arch, genotype, self.settings.num_classes, seed=seed)
        return model.to(self.device, memory_format=self.memory_format)

    def score(self, candidate: int, genotype: Genotype, costs: dict | None = None) -> dict:
        """One candidate's row: its scores, then seconds per proxy pass and in all. `costs` (its
        params / macs / ops) is what the cost-column controls read."""
        start = time.perf_counter()
        results, seconds = measure_candidate(
            self.network(candidate, genotype),
            self.batches(candidate),
            self.proxies,
            self.points,
            self.settings.seed,
            candidate,
            costs,
            self.settings.table1_mode,
        )
        values, blocks = results[1]
        record = {"fisher": values["fisher"], "fisher_blocks": json.dumps(blocks)}
        for proxy, k, column in self.settings.extra_columns():
            record[column] = results[k][0][proxy]
        for column in self.settings.timing_columns():
            record[column] = round(seconds[column[len(TIMING_PREFIX) :]], 4)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        record["seconds"] = round(time.perf_counter() - start, 4)
        return record


def _fingerprint(settings: ScoringSettings, rows: pd.DataFrame) -> str:
    return json_digest(asdict(settings), rows[CANDIDATE_COLUMNS].to_csv(index=False))


def score_candidates(
    candidates: pd.DataFrame,
    settings: ScoringSettings,
    data: Dataset,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    device: torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score this shard's candidates into `out` (CSV) and `out.provenance.json`.

    Rows are appended to `out.partial` as they finish; a rerun after an interruption resumes from
    it (after checking it belongs to the same settings and candidates), and `out` appears only
    when the shard is complete. The partial file is locked while a process writes it, so a second
    process scoring into the same `out` stops at once instead of interleaving rows.
    """
    device = device or torch.device("cpu")
    settings = settings.on(device)
    out = Path(out)
    # Found now, not after the scoring.
    if out.is_dir():
        raise BlockswapError(f"{out} is a folder, not a file the scores can be written to")
    check_result_name(out)
    rows = shard_of(candidates, shard)
    fingerprint = _fingerprint(settings, rows)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    header = CANDIDATE_COLUMNS + settings.columns() + settings.timing_columns() + ["seconds"]
    start = time.perf_counter()
    with locked_partial(partial, out) as fh:
        done = _read_partial(fh, partial, fingerprint, header, rows)
        todo = rows[~rows["candidate"].isin(done["candidate"])]
        if len(todo):
            scorer = Scorer(settings, data, device)
            if os.fstat(fh.fileno()).st_size == 0:
                fh.write(partial_preamble(fingerprint, header))
            bar = tqdm(
                todo.itertuples(index=False),
                total=len(rows),
                initial=len(done),
                disable=not progress,
                desc=f"scoring shard {shard[0]}/{shard[1]}",
                unit="cand",
            )
            for row in bar:
                record = {c: getattr(row, c) for c in CANDIDATE_COLUMNS}
                costs = {c: int(getattr(row, c)) for c in ("params", "macs", "ops")}
                record.update(scorer.score(int(row.candidate), Genotype.parse(row.genotype), costs))
                fh.write(pd.DataFrame([record], columns=header).to_csv(index=False, header=False).encode())
                fh.flush()
                bar.set_postfix(fisher=f"{record['fisher']:.3g}")
        # Read back through the same checks, so a resumed shard gives the file an uninterrupted one does.
        scored = _read_partial(fh, partial, fingerprint, header, rows).sort_values("candidate").reset_index(drop=True)
        if len(scored) != len(rows):
            raise BlockswapError(
                f"{partial} holds {len(scored)} of the shard's {len(rows)} candidates after scoring; {_afresh(partial)}"
            )
        record = {
            "shard": list(shard),
            "candidates_total": int(len(candidates)),
            "candidates_in_shard": int(len(rows)),
            "settings": asdict(settings),
            "fingerprint": fingerprint,
            "provenance": provenance(seed=settings.seed, device=device, seconds=time.perf_counter() - start),
        }
        write_result_text(out, scored.to_csv(index=False), record)
        partial.unlink()
    return scored


def _afresh(partial: Path) -> str:
    return f"delete it to score this shard afresh: rm {partial}"


def _read_partial(fh, partial: Path, fingerprint: str, header: list[str], rows: pd.DataFrame) -> pd.DataFrame:
    """The finished rows of `partial` (open as `fh`), checked against this shard's candidates.

    Repaired where the repair is certain: a last line cut short (a kill or a full disk mid-write)
    is cut off, and a candidate scored twice with the same values (scores are repeatable; only the
    timing may differ) is kept once. Anything else (rows of other candidates, one candidate with
    two different scores, a damaged line) is refused with the command that starts the shard afresh.
    """
    fh.seek(0)
    data = fh.read()
    complete = data[: data.rfind(b"\n") + 1]  # whole lines; a line without its newline was cut short
    preamble = partial_preamble(fingerprint, header)
    if not complete.startswith(preamble):
        if preamble.startswith(complete):  # killed before the first row was written: nothing to resume
            fh.truncate(0)
            return pd.DataFrame(columns=header)
        if complete.split(b"\n", 1)[0] != preamble.split(b"\n", 1)[0]:
            raise BlockswapError(f"{partial} holds scores of other settings or candidates; {_afresh(partial)}")
        raise BlockswapError(f"{partial} has other columns than this shard's scores; {_afresh(partial)}")
    if len(complete) < len(data):
        fh.truncate(len(complete))
    try:
        text = complete[complete.index(b"\n") + 1 :].decode("utf-8")
        done = parse_csv(text, partial, score_kind, header, first_line=2)
    except UnicodeDecodeError:
        raise BlockswapError(f"{partial} is damaged (not text); {_afresh(partial)}") from None
    except BlockswapError as err:
        raise BlockswapError(f"{err}; {_afresh(partial)}") from None
    expected = rows.set_index("candidate")
    foreign = sorted(set(done["candidate"]) - set(expected.index))
    if foreign:
        shown = ", ".join(map(str, foreign[:5]))
        raise BlockswapError(f"{partial} holds candidates that are not in this shard ({shown}); {_afresh(partial)}")
    for column in CANDIDATE_COLUMNS[1:]:
        differ = done[done[column].to_numpy() != expected.loc[done["candidate"], column].to_numpy()]
        if len(differ):
            raise BlockswapError(
                f"{partial}: candidate {differ['candidate'].iloc[0]} has another {column} than this "
                f"shard's; {_afresh(partial)}"
            )
    distinct = done.drop_duplicates([c for c in header if not is_timing(c)])
    twice = sorted(set(distinct.loc[distinct["candidate"].duplicated(), "candidate"]))
    if twice:
        raise BlockswapError(f"{partial} scores candidate {twice[0]} twice with different values; {_afresh(partial)}")
    return distinct.reset_index(drop=True)
