"""Where a workflow run's time went: Snakemake's benchmark files (one TSV per job, written by a
rule's `benchmark:` directive) summed per rule.

A benchmark file does not say which rule wrote it; its path does. The workflow hands over each
rule's benchmark pattern (`{wildcard}` or `{wildcard,regex}` parts, as Snakemake spells them), and
every file is put under the first rule whose pattern it matches. A file no pattern matches (one a
rule wrote under an earlier layout) counts under the folder it sits in, below the benchmarks folder.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd

from ..errors import BlockswapError
from ..validation import read_text

BENCHMARK_SUFFIX = ".tsv"
SECONDS_COLUMN = "s"  # Snakemake's wall-clock seconds of the job
TIMING_COLUMNS = ["rule", "jobs", "total s", "share %", "max s", "mean s"]
# A wildcard in a Snakemake file pattern: {name} or {name,regex} (whose regex may hold {m,n}).
WILDCARD = re.compile(r"\{\s*(?P<name>\w+?)(\s*,\s*(?P<constraint>([^{}]+|\{\d+(,\d+)?\})*))?\s*\}")


def pattern_regex(pattern: str) -> re.Pattern:
    """A compiled regex matching the paths a Snakemake file pattern stands for."""
    parts, end = [], 0
    for match in WILDCARD.finditer(pattern):
        parts.append(re.escape(pattern[end : match.start()]))
        parts.append(f"(?:{match.group('constraint') or '.+'})")
        end = match.end()
    parts.append(re.escape(pattern[end:]))
    try:
        return re.compile("".join(parts))
    except re.error as err:
        raise BlockswapError(f"benchmark pattern {pattern!r} is not a valid pattern ({err})") from None


def benchmark_files(folder) -> list[Path]:
    """Every benchmark TSV under `folder`, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BlockswapError(f"benchmark folder {folder} does not exist (or is not a folder)")
    return sorted(p for p in folder.rglob(f"*{BENCHMARK_SUFFIX}") if p.is_file())


def benchmark_seconds(path) -> float:
    """Wall seconds of one job from its benchmark TSV: the sum over its rows (a rule with
    `repeat()` runs the job that many times, each a row)."""
    text, _ = read_text(path, "benchmark file")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise BlockswapError(f"benchmark file {path} is not a TSV table ({str(err).splitlines()[0]})") from None
    if SECONDS_COLUMN not in frame or frame.empty:
        raise BlockswapError(
            f"benchmark file {path} has no rows of seconds (column {SECONDS_COLUMN!r}); delete it or rerun its job"
        )
    seconds = pd.to_numeric(frame[SECONDS_COLUMN], errors="coerce")
    if seconds.isna().any() or (seconds < 0).any():
        raise BlockswapError(f"benchmark file {path}: column {SECONDS_COLUMN!r} holds something other than seconds")
    return float(seconds.sum())


def rule_of(path: Path, folder: Path, patterns: dict[str, re.Pattern]) -> str:
    shown = os.path.normpath(path)
    for rule, regex in patterns.items():
        if regex.fullmatch(shown):
            return rule
    return path.relative_to(folder).parts[0].removesuffix(BENCHMARK_SUFFIX)


def timings_table(folder, patterns: dict[str, str] | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Per rule: jobs benchmarked, total, share of the whole, longest and mean job in seconds,
    longest total first; and the files read. Jobs without a benchmark file (results built before
    the directive, or by hand) are simply not counted: the table covers what was measured."""
    folder = Path(folder)
    regexes = {rule: pattern_regex(os.path.normpath(p)) for rule, p in (patterns or {}).items()}
    files = benchmark_files(folder)
    rows = [{"rule": rule_of(path, folder, regexes), "seconds": benchmark_seconds(path)} for path in files]
    if not rows:
        return pd.DataFrame(columns=TIMING_COLUMNS), files
    frame = pd.DataFrame(rows)
    table = frame.groupby("rule", sort=False)["seconds"].agg(["count", "sum", "max", "mean"]).reset_index()
    table.columns = ["rule", "jobs", "total s", "max s", "mean s"]
    whole = table["total s"].sum()
    table["share %"] = 100 * table["total s"] / whole if whole > 0 else 0.0
    table = table.sort_values(["total s", "rule"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return table[TIMING_COLUMNS].round({"total s": 2, "share %": 1, "max s": 2, "mean s": 2}), files


def timings_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a total row, for Markdown."""
    if table.empty:
        return table
    total = {
        "rule": "total",
        "jobs": int(table["jobs"].sum()),
        "total s": round(table["total s"].sum(), 2),
        "share %": 100.0 if table["total s"].sum() > 0 else 0.0,
        "max s": table["max s"].max(),
        "mean s": None,
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
