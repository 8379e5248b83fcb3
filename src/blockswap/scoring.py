"""Scoring sampled candidates (sharded, resumable, repeatable) and selecting the winner.

Determinism beyond the released code: by default every candidate is measured on the *same*
seeded minibatch(es), and candidate i is initialised from a seed derived from (seed, i), so its
score is the same whichever shard or machine computes it. `minibatch="per-candidate"` gives the
released code's behaviour (a fresh random minibatch per candidate), still seeded.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .datasets import Dataset, training_batches
from .errors import BlockswapError
from .fisher import measure_along_training, parse_proxies
from .genotype import Genotype
from .models import build_model, parse_arch
from .provenance import atomic_write_text, input_digests, provenance, provenance_path, write_json
from .sampling import CANDIDATE_COLUMNS
from .seeds import derive_seed

MINIBATCH_MODES = ("shared", "per-candidate")
PARTIAL_SUFFIX = ".partial"


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
    # NHWC: mkldnn's convolutions run ~1.5x faster on CPU (bench/fisher_scoring.py); the layout
    # changes float rounding, so it is part of the settings a score depends on.
    channels_last: bool = True
    # TF32 convolutions (PyTorch's default on Ampere and newer GPUs) moved Fisher potentials by up
    # to 5.6 % relative from float32 on an H100 (bench/gpu.sh), enough to reorder close candidates:
    # scoring runs in true float32 unless asked. No effect on the CPU.
    tf32: bool = False

    def __post_init__(self):
        if self.minibatch not in MINIBATCH_MODES:
            raise BlockswapError(f"minibatch mode must be one of {', '.join(MINIBATCH_MODES)}, got {self.minibatch!r}")
        if self.batch_size < 1:
            raise BlockswapError(f"batch size must be at least 1, got {self.batch_size}")
        self.proxies = [p.name for p in parse_proxies(self.proxies)]
        self.minibatches = sorted(set(int(k) for k in self.minibatches))
        if self.minibatches[0] < 1:
            raise BlockswapError(f"minibatch counts must be positive, got {self.minibatches}")

    def extra_columns(self) -> list[tuple[str, int, str]]:
        """(proxy, k, column) of every measurement beyond the Fisher potential at k = 1 (which is
        the `fisher` and `fisher_blocks` columns): `<proxy>@<k>`."""
        return [(p, k, f"{p}@{k}") for k in self.minibatches for p in self.proxies if (p, k) != ("fisher", 1)]

    def columns(self) -> list[str]:
        return ["fisher", "fisher_blocks"] + [column for _, _, column in self.extra_columns()]


class Scorer:
    """Measures candidates one by one; the shared minibatches are drawn once and reused."""

    def __init__(self, settings: ScoringSettings, data: Dataset, device: torch.device):
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

    def formatted(self, batch):
        images, labels = batch
        return images.contiguous(memory_format=self.memory_format), labels

    def batches(self, candidate: int):
        if self.shared is not None:
            return iter(self.shared)
        seed = derive_seed(self.settings.seed, candidate, 1)
        return map(self.formatted, training_batches(self.data, self.settings.batch_size, seed, self.device))

    def score(self, candidate: int, genotype: Genotype) -> dict:
        start = time.perf_counter()
        model = build_model(self.arch, genotype, self.settings.num_classes, seed=derive_seed(self.settings.seed, candidate))
        model.to(self.device, memory_format=self.memory_format)
        results = measure_along_training(model, self.batches(candidate), self.proxies, self.points)
        values, blocks = results[1]
        record = {"fisher": values["fisher"], "fisher_blocks": json.dumps(blocks)}
        for proxy, k, column in self.settings.extra_columns():
            record[column] = results[k][0][proxy]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        record["seconds"] = round(time.perf_counter() - start, 4)
        return record


def _fingerprint(settings: ScoringSettings, rows: pd.DataFrame) -> str:
    payload = json.dumps(asdict(settings), sort_keys=True) + rows[CANDIDATE_COLUMNS].to_csv(index=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def score_candidates(
    candidates: pd.DataFrame,
    settings: ScoringSettings,
    data: Dataset,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    device: Optional[torch.device] = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score this shard's candidates into `out` (CSV) and `out.provenance.json`.

    Rows are appended to `out.partial` as they finish; a rerun after an interruption resumes from
    it (after checking it belongs to the same settings and candidates), and `out` appears only
    when the shard is complete.
    """
    device = device or torch.device("cpu")
    out = Path(out)
    rows = shard_of(candidates, shard)
    fingerprint = _fingerprint(settings, rows)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    header = CANDIDATE_COLUMNS + settings.columns() + ["seconds"]
    done = _resume(partial, fingerprint, header)
    start = time.perf_counter()
    todo = rows[~rows["candidate"].isin(done["candidate"])] if len(done) else rows
    if len(todo):
        scorer = Scorer(settings, data, device)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "a") as fh:
            if fh.tell() == 0:
                fh.write(f"# {fingerprint}\n")
                pd.DataFrame(columns=header).to_csv(fh, index=False)
            bar = tqdm(todo.itertuples(index=False), total=len(rows), initial=len(done), disable=not progress,
                       desc=f"scoring shard {shard[0]}/{shard[1]}", unit="cand")
            for row in bar:
                record = {c: getattr(row, c) for c in CANDIDATE_COLUMNS}
                record.update(scorer.score(int(row.candidate), Genotype.parse(row.genotype)))
                pd.DataFrame([record], columns=header).to_csv(fh, index=False, header=False)
                fh.flush()
                bar.set_postfix(fisher=f"{record['fisher']:.3g}")
    scored = _complete_rows(_read_partial(partial), header) if partial.exists() else done
    scored = scored.drop_duplicates("candidate", keep="first").sort_values("candidate").reset_index(drop=True)
    if len(scored) != len(rows):
        raise BlockswapError(f"scored {len(scored)} of {len(rows)} candidates; rerun to finish")
    record = {
        "shard": list(shard),
        "candidates_total": int(len(candidates)),
        "candidates_in_shard": int(len(rows)),
        "settings": asdict(settings),
        "fingerprint": fingerprint,
        "provenance": provenance(seed=settings.seed, device=device, seconds=time.perf_counter() - start),
    }
    atomic_write_text(out, scored.to_csv(index=False))
    write_json(provenance_path(out), record)
    partial.unlink(missing_ok=True)
    return scored


def _read_partial(partial: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(partial, skiprows=1)  # line 1 is the fingerprint
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _complete_rows(frame: pd.DataFrame, header: list[str]) -> pd.DataFrame:
    # A row cut short by a kill mid-write has missing cells: drop it, it will be scored again.
    if list(frame.columns) != header:
        return pd.DataFrame(columns=header)
    return frame.dropna(subset=["seconds"])


def _resume(partial: Path, fingerprint: str, header: list[str]) -> pd.DataFrame:
    """Finished rows of an interrupted run; the partial file is rewritten to hold only those."""
    if not partial.exists():
        return pd.DataFrame(columns=header)
    first = partial.open().readline().strip()
    if first != f"# {fingerprint}":
        raise BlockswapError(
            f"{partial} holds scores of other settings or candidates; delete it to start this shard afresh"
        )
    done = _complete_rows(_read_partial(partial), header)
    atomic_write_text(partial, f"# {fingerprint}\n" + done.to_csv(index=False))
    return done


# --- select -------------------------------------------------------------------------------------

TOP_ROWS = 10  # rows of the rank table kept in the selection's provenance


def select_best(score_files: Sequence[Path], first: Optional[int] = None) -> dict:
    """Merge shards, check the candidates are complete and unique, return the top-Fisher one (of
    the first `first` candidates only, for the samples ablation: best-of-N)."""
    frames, totals = [], set()
    for path in score_files:
        path = Path(path)
        if not path.is_file():
            raise BlockswapError(f"scores file {path} does not exist")
        frame = pd.read_csv(path)
        if "fisher" not in frame or "candidate" not in frame:
            raise BlockswapError(f"{path} is not a scores file (no 'candidate' / 'fisher' columns)")
        meta_path = provenance_path(path)
        if meta_path.is_file():
            totals.add(json.loads(meta_path.read_text())["candidates_total"])
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    duplicated = sorted(set(merged.loc[merged["candidate"].duplicated(), "candidate"]))
    if duplicated:
        raise BlockswapError(f"candidates scored twice across the shards: {duplicated[:10]}")
    if len(totals) > 1:
        raise BlockswapError(f"the shards come from different candidate lists (totals {sorted(totals)})")
    total = totals.pop() if totals else int(merged["candidate"].max()) + 1
    missing = sorted(set(range(total)) - set(merged["candidate"]))
    if missing:
        raise BlockswapError(f"{len(missing)} of {total} candidates have no score (first: {missing[:10]}); a shard is missing")
    if first is not None:
        if not 1 <= first <= total:
            raise BlockswapError(f"--first must be between 1 and the {total} scored candidates, got {first}")
        merged = merged[merged["candidate"] < first]
    # Highest Fisher potential wins; ties go to the lower candidate index (deterministic).
    ranked = merged.sort_values(["fisher", "candidate"], ascending=[False, True], kind="stable").reset_index(drop=True)
    best = ranked.iloc[0]
    top = ranked.head(TOP_ROWS)[["candidate", "genotype", "params", "macs", "ops", "fisher"]]
    return {
        "genotype": best["genotype"].split(),
        "candidate": int(best["candidate"]),
        "fisher": float(best["fisher"]),
        "params": int(best["params"]),
        "macs": int(best["macs"]),
        "ops": int(best["ops"]),
        "candidates": int(len(merged)),
        "of_total": total,
        "rank_table": top.to_dict(orient="records"),
        "sources": input_digests(score_files),
    }
