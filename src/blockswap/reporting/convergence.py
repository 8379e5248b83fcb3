"""Whether each training run converged, per method: the last epoch's training loss and how much
the validation error still moved at the end.

Per method (the random students per budget), from the students table: each run's metrics.json records
`final_train_loss` (the last epoch's mean training loss), `val_error_change` (validation error
at the last epoch minus that at the start of the last 20 % of epochs, in points; null without a
validation split) and `convergence_window` (epochs in that window). A run plateaued when
|val_error_change| <= the threshold; a run without a validation split is "unknown", never counted
as plateaued.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from .report import TABLE2_ORDER

DEFAULT_PLATEAU = 1.0  # points of validation error over the last window, at most, for a plateau
CONVERGENCE_NEEDED = ["method", "network", "seed", "budget", "final_train_loss", "val_error_change"]


def _convergence_groups(students: pd.DataFrame):
    """(method, budget or None, rows) in the paper's order of methods; random students per budget."""
    methods = sorted(students["method"].unique(), key=lambda m: (TABLE2_ORDER.get(m, len(TABLE2_ORDER)), m))
    for method in methods:
        rows = students[students["method"] == method]
        if method == "random":
            for budget, group in rows.groupby("budget", sort=True, dropna=False):
                yield method, None if pd.isna(budget) else int(budget), group
        else:
            yield method, None, rows


def convergence_row(method: str, budget, rows: pd.DataFrame, plateau: float) -> dict:
    """Training loss and validation-error change of one method's runs, and which did not plateau."""
    loss = rows["final_train_loss"].dropna()
    change = rows["val_error_change"].abs()
    known = change.dropna()
    flat = known <= plateau
    moving = rows.loc[known.index[~flat.to_numpy()]].sort_values(["network", "seed"], kind="stable")
    window = rows["convergence_window"].dropna() if "convergence_window" in rows else pd.Series(dtype=float)
    return {
        "method": method,
        "budget": budget,
        "runs": len(rows),
        "final_train_loss_median": float(loss.median()) if len(loss) else np.nan,
        "final_train_loss_worst": float(loss.max()) if len(loss) else np.nan,
        "val_error_change_median": float(known.median()) if len(known) else np.nan,
        "val_error_change_worst": float(known.max()) if len(known) else np.nan,
        "window_epochs": float(window.median()) if len(window) else np.nan,
        "plateau_points": plateau,
        "plateaued": int(flat.sum()),
        "not_plateaued": int((~flat).sum()),
        "unknown": int(change.isna().sum()),
        "not_plateaued_runs": " ".join(f"{n}/{int(s)}" for n, s in zip(moving["network"], moving["seed"])),
    }


def convergence_table(students: pd.DataFrame, plateau: float = DEFAULT_PLATEAU) -> pd.DataFrame:
    """Per method (random students per budget): n runs, median and worst final training loss and
    |val_error_change|, and the count and names (network/seed) of the runs that plateaued, did
    not, or cannot tell (no validation split)."""
    if not (np.isfinite(plateau) and plateau >= 0):
        raise BlockswapError(f"--plateau is {plateau}, expected points of validation error >= 0")
    missing = [c for c in CONVERGENCE_NEEDED if c not in students]
    if missing:
        raise BlockswapError(
            f"the students table has no {missing[0]} column: it was built from runs that did not "
            "record convergence; train them with this version and rebuild it (blockswap report students)"
        )
    if students.empty:
        raise BlockswapError("the students table has no runs")
    rows = [convergence_row(m, b, group, plateau) for m, b, group in _convergence_groups(students)]
    table = pd.DataFrame(rows)
    table["budget"] = table["budget"].astype("Int64")
    return table


def convergence_display(table: pd.DataFrame) -> pd.DataFrame:
    """The convergence table for reading; the plateau criterion is in the column names."""
    number = lambda v, d=3: "" if pd.isna(v) else f"{v:.{d}f}"  # noqa: E731
    plateau = f"{table['plateau_points'].iloc[0]:g}" if len(table) else f"{DEFAULT_PLATEAU:g}"
    return pd.DataFrame(
        {
            "method": table["method"],
            "budget": table["budget"],
            "runs": table["runs"],
            "final train loss median": table["final_train_loss_median"].map(number),
            "final train loss worst": table["final_train_loss_worst"].map(number),
            "abs val error change median (pt)": table["val_error_change_median"].map(lambda v: number(v, 2)),
            "abs val error change worst (pt)": table["val_error_change_worst"].map(lambda v: number(v, 2)),
            "window (epochs)": table["window_epochs"].map(lambda v: number(v, 0)),
            f"plateaued (abs change <= {plateau} pt)": table["plateaued"],
            "not plateaued": table["not_plateaued"],
            "unknown (no val split)": table["unknown"],
            "not plateaued runs": table["not_plateaued_runs"],
        }
    )
