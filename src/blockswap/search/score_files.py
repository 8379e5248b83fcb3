"""What a scores file holds and how its unfinished `.partial` file is kept.

The column names live here, built and parsed in one place: `<proxy>@<k>` for a proxy measured
after k minibatches, `seconds_<proxy>` for its time. The partial file's lock and first lines are
shared by the score shards (`scoring.py`) and the guided searches (`evolution.py`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import BlockswapError
from ..locks import exclusive
from .proxies import PROXIES
from .sampling import CANDIDATE_COLUMNS

PARTIAL_SUFFIX = ".partial"
# Kind of each column of a candidates or scores file (validation.EXPECTED says what each kind is).
SCORE_KINDS = {
    "candidate": "int",
    "genotype": "text",
    "params": "int",
    "macs": "int",
    "ops": "int",
    "fisher": "number",
    "fisher_blocks": "numbers",
    "seconds": "number",
}
SELECT_COLUMNS = CANDIDATE_COLUMNS + ["fisher"]  # what selecting the best candidate reads
# `seconds_<proxy>`: one proxy's seconds per candidate (summed over its points k). Not
# `seconds@<proxy>`: every `<name>@<k>` column is a proxy measured after k minibatches.
TIMING_PREFIX = "seconds_"
PROXY_SEPARATOR = "@"  # a proxy measured after k minibatches is the scores column `<proxy>@<k>`
# Proxies every scores file holds in a column of their own name: the Fisher potential at
# initialisation and the candidates' costs. Any other is measured on request, as `<proxy>@1`.
OWN_COLUMN_PROXIES = ("fisher", "params", "macs")


def proxy_column(proxy: str, k: int) -> str:
    """The scores-file column of `proxy` measured after `k` minibatches."""
    return f"{proxy}{PROXY_SEPARATOR}{k}"


def parse_proxy_column(column: str) -> tuple[str, int] | None:
    """(proxy, k) of a `<proxy>@<k>` column; None for any other column."""
    proxy, sep, k = column.rpartition(PROXY_SEPARATOR)
    return (proxy, int(k)) if sep and proxy and k.isdigit() else None


def score_kind(column: str) -> str | None:
    """A scores-file column's kind: the fixed columns, every `<proxy>@<k>` and every
    `seconds_<proxy>` a finite number."""
    if column.startswith(TIMING_PREFIX):
        return "number"
    return SCORE_KINDS.get(column, "number" if parse_proxy_column(column) else None)


def is_timing(column: str) -> bool:
    """A column that holds a time: it differs between runs that give the same scores."""
    return column == "seconds" or column.startswith(TIMING_PREFIX)


def selection_column(proxy: str) -> str:
    """The scores-file column a proxy selects by: its value at initialisation (k = 1)."""
    if proxy not in PROXIES:
        raise BlockswapError(f"unknown proxy {proxy!r}; allowed: {', '.join(PROXIES)}")
    return proxy if proxy in OWN_COLUMN_PROXIES else proxy_column(proxy, 1)


@contextmanager
def locked_partial(partial: Path, out: Path):
    """`partial`, opened for reading and appending under an exclusive lock (locks.exclusive). An
    empty partial file is removed on the way out, so a run that scored nothing leaves nothing behind."""
    busy = f"another process is scoring into {out} ({partial} is locked); wait for it to finish or stop it"
    with exclusive(partial, busy) as fh:
        try:
            yield fh
        finally:
            if partial.exists() and os.fstat(fh.fileno()).st_size == 0:
                partial.unlink()


def partial_preamble(fingerprint: str, header: list[str]) -> bytes:
    """A partial file's first two lines: the fingerprint of what it scores, and the CSV header."""
    return f"# {fingerprint}\n{','.join(header)}\n".encode()
