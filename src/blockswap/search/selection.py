"""Reading scores files and picking the best candidate: merge a budget's shards, check them against
the sampled candidates, and rank by a proxy (the paper's: highest Fisher potential). Needs no
torch: the `select` step reads what scoring wrote."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import BlockswapError
from ..provenance import input_digests
from ..validation import read_csv_table
from .proxies import PROXIES
from .sampling import CANDIDATE_COLUMNS, read_candidates
from .score_files import SELECT_COLUMNS, score_kind, selection_column


def read_scores(path, required: Sequence[str] = SELECT_COLUMNS) -> tuple[pd.DataFrame, dict | None]:
    """A scores file (`blockswap score --out`: a shard, or the ablation's proxies), checked: seal,
    whole lines, the `required` columns, every cell's kind, and as many rows as were scored into
    it. Returns the table and its sidecar record (None where it has none)."""
    frame, record = read_csv_table(path, "scores file", score_kind, required)
    written = (record or {}).get("candidates_in_shard")
    if written is not None and len(frame) != written:
        raise BlockswapError(
            f"{path} has {len(frame)} rows but {written} candidates were scored into it; rerun the step that wrote it"
        )
    return frame, record


def load_candidates(path) -> pd.DataFrame:
    """The sampled candidates (`blockswap sample --out`), checked: seal, whole lines, each cell's
    kind; `read_candidates` then checks the columns and that no index appears twice."""
    read_csv_table(path, "candidates file", score_kind)
    return read_candidates(path)


TOP_ROWS = 10  # rows of the rank table kept in the selection's provenance


def select_best(
    score_files: Sequence[Path], candidates_file: Path, first: int | None = None, proxy: str = "fisher"
) -> dict:
    """Merge shards, check that they score every candidate of `candidates_file` exactly once, each
    as listed there and all with the same settings, and return the best one by `proxy` (the
    paper's: highest Fisher potential), of the first `first` candidates only for the samples
    ablation (best-of-N)."""
    by = selection_column(proxy)
    candidates = load_candidates(candidates_file).set_index("candidate")
    total = len(candidates)
    frames, settings = [], {}
    for path in map(Path, score_files):
        frame, record = read_scores(path, list(dict.fromkeys(SELECT_COLUMNS + [by])))
        sampled = (record or {}).get("candidates_total")
        if sampled is not None and sampled != total:
            raise BlockswapError(
                f"{path} scores a list of {sampled} candidates but {candidates_file} has {total}: "
                "they come from different samples"
            )
        if record and "settings" in record:
            settings.setdefault(json.dumps(record["settings"], sort_keys=True), path)
        frames.append(frame.assign(_source=str(path)))
    if len(settings) > 1:
        first_two = list(settings.values())[:2]
        raise BlockswapError(
            f"{first_two[0]} and {first_two[1]} were scored with different settings: their Fisher "
            "potentials do not compare"
        )
    merged = pd.concat(frames, ignore_index=True)
    duplicated = sorted(set(merged.loc[merged["candidate"].duplicated(), "candidate"]))
    if duplicated:
        raise BlockswapError(f"candidates scored twice across the shards: {duplicated[:10]}")
    unknown = merged[~merged["candidate"].isin(candidates.index)]
    if len(unknown):
        raise BlockswapError(
            f"{unknown['_source'].iloc[0]} scores candidate {unknown['candidate'].iloc[0]}, which "
            f"{candidates_file} does not list: they come from different samples"
        )
    missing = sorted(set(candidates.index) - set(merged["candidate"]))
    if missing:
        raise BlockswapError(
            f"{len(missing)} of {total} candidates have no score (first: {missing[:10]}); a shard is "
            "missing or incomplete"
        )
    for column in CANDIDATE_COLUMNS[1:]:
        listed = candidates.loc[merged["candidate"], column].to_numpy()
        differ = merged[merged[column].to_numpy() != listed]
        if len(differ):
            row = differ.iloc[0]
            raise BlockswapError(
                f"{row['_source']}: candidate {row['candidate']} has {column} {row[column]!r} but "
                f"{candidates_file} lists {candidates.loc[row['candidate'], column]!r}: the scores "
                "and the candidates come from different samples"
            )
    if first is not None:
        if not 1 <= first <= total:
            raise BlockswapError(f"--first must be between 1 and the {total} scored candidates, got {first}")
        merged = merged[merged["candidate"] < first]
    # The best by the proxy's sign wins (highest Fisher potential, in the paper); ties go to the
    # lower candidate index (deterministic).
    higher = PROXIES[proxy].higher_is_better
    ranked = merged.sort_values([by, "candidate"], ascending=[not higher, True], kind="stable").reset_index(drop=True)
    best = ranked.iloc[0]
    top = ranked.head(TOP_ROWS)[list(dict.fromkeys(["candidate", "genotype", "params", "macs", "ops", "fisher", by]))]
    return {
        "genotype": best["genotype"].split(),
        "candidate": int(best["candidate"]),
        "proxy": proxy,
        "score": float(best[by]),
        "fisher": float(best["fisher"]),
        "params": int(best["params"]),
        "macs": int(best["macs"]),
        "ops": int(best["ops"]),
        "candidates": int(len(merged)),
        "of_total": total,
        "rank_table": top.to_dict(orient="records"),
        "sources": input_digests([*score_files, candidates_file]),
    }
