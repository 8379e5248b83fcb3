"""How the cheap counts (params, MACs) and trained test error rank a run's trained networks by their
measured latency: Kendall tau with its bootstrap interval, from the students table's latency column
(deploy measures it)."""

from __future__ import annotations

import pandas as pd

from ..deploy.settings import LATENCY_COLUMN
from ..errors import BlockswapError
from ..stats.ranks import tau_with_interval

RANK_COLUMNS = ["measure", "kendall_tau", "low", "high", "n"]


def latency_ranks(students: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau of params, MACs and trained test error against measured latency among the
    trained networks of a run (`tables/students.csv` with its latency_ms column). A network trained
    under several seeds is one network: its latencies are averaged, so n counts distinct networks."""
    if LATENCY_COLUMN not in students.columns or students[LATENCY_COLUMN].isna().all():
        raise BlockswapError(
            "the students table has no measured latency (latency_ms is empty): "
            "set latency.enabled and rerun, or pass 'blockswap measure' files to 'report students'"
        )
    measured = students.dropna(subset=[LATENCY_COLUMN])
    networks = measured.groupby(["arch", "genotype"], sort=True).agg(
        params=("params", "first"),
        macs=("macs", "first"),
        test_error=("test_error", "mean"),
        latency=(LATENCY_COLUMN, "mean"),
    )
    rows = []
    for measure in ("params", "macs", "test_error"):
        tau = tau_with_interval(networks[measure], networks["latency"])
        rows.append([measure, tau["tau"], tau["low"], tau["high"], tau["n"]])
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def latency_ranks_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The latency ranks as printed: tau and its 95 % interval as text, and what n counts."""

    def show(value) -> str:
        return "n/a" if value is None or pd.isna(value) else f"{value:+.2f}"

    rows = [
        {
            "measure": row.measure,
            "Kendall tau with measured latency": show(row.kendall_tau),
            "95 % interval": f"[{show(row.low)}, {show(row.high)}]",
            "n": row.n,
        }
        for row in frame.itertuples(index=False)
    ]
    rows.append(
        {
            "measure": "note",
            "Kendall tau with measured latency": "n counts distinct trained networks (seeds of one network "
            "averaged); a tau near 1 means the count orders networks as their measured latency does; the "
            "interval is a 95 % bootstrap over networks",
        }
    )
    return pd.DataFrame(rows)
