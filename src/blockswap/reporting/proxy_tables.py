"""Tables of the proxy shoot-out (Table 1): correlation of each proxy with trained error, rank
stability under other scoring seeds, and what each proxy costs to compute."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BlockswapError
from ..search.proxies import PROXIES
from ..search.score_files import TIMING_PREFIX, parse_proxy_column
from ..search.selection import read_scores
from ..stats.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from ..validation import read_csv_table
from .correlation import POOLED, Measure, correlate, stability
from .noise import group_ceilings
from .paper import table1_match


def proxy_columns(frame: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(proxy, k, column) for every proxy column of a scores file, plus the params/macs controls."""
    cols = [("fisher", 1, "fisher")] if "fisher" in frame else []
    for column in frame.columns:
        parsed = parse_proxy_column(column)
        if parsed:
            cols.append((*parsed, column))
    return cols + [("params", 0, "params"), ("macs", 0, "macs")]


def higher_is_better(proxy: str) -> bool:
    """The registry's sign of a proxy or control: whether higher values predict lower error."""
    if proxy not in PROXIES:
        raise BlockswapError(f"a scores file has a column of proxy {proxy!r}, which the proxy registry does not know")
    return PROXIES[proxy].higher_is_better


def correlation_table(students: pd.DataFrame, proxy_files: dict, resamples: int = BOOTSTRAP_RESAMPLES) -> pd.DataFrame:
    """Per budget and pooled over budgets, per proxy: Spearman rho and Kendall tau of proxy vs final
    test error (mean over seeds) of the random students, the sign-corrected `quality`, partial tau
    given params and given MACs, 95 % bootstrap intervals, n, whether the proxy beats the params
    control, the paper's Table 1 rho where the setting is the paper's (docs/proxies.md), and the
    group's noise ceiling from the seeds of the random students (CEILING_COLUMNS)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    random = students[students["method"] == "random"]
    dataset = random["dataset"].iloc[0] if len(random) else ""
    rows, joined_all, measures = [], [], None
    for budget, path in proxy_files.items():
        proxies = read_scores(path, ["candidate", "params", "macs"])[0]
        errors = _random_errors(random, int(budget), proxies, path)
        joined = proxies.set_index("candidate").join(errors, how="inner").reset_index()
        ours = [Measure(p, k, c, higher_is_better(p)) for p, k, c in proxy_columns(proxies)]
        if measures is not None and [m.column for m in ours] != [m.column for m in measures]:
            raise BlockswapError(
                f"{path} measured other proxies than the other budgets' files: every budget "
                "must be scored with the same --proxies and --minibatches"
            )
        measures = ours
        rows += correlate(joined, measures, int(budget), rng, resamples)
        joined_all.append(joined)
    if len(joined_all) > 1:  # pooled: every budget's networks together (params then also spans budgets)
        rows += correlate(pd.concat(joined_all, ignore_index=True), measures, POOLED, rng, resamples)

    table = with_ceilings(pd.DataFrame(rows), random, [int(b) for b in proxy_files], resamples)
    if not table.empty:
        table.insert(
            4,
            "paper_spearman",
            [table1_match(p, b, k, dataset) for p, b, k in zip(table["proxy"], table["budget"], table["minibatches"])],
        )
    return table


# The noise ceiling beside each correlation row (results/noise.py): seeds per network, the
# seed-to-seed Kendall tau of error with its interval, the largest tau any predictor can reach with
# the seed-mean error, and the row's quality as a share of that.
CEILING_COLUMNS = ["seeds", "seed_tau", "seed_tau_low", "seed_tau_high", "ceiling_tau", "quality_of_ceiling"]


def with_ceilings(table: pd.DataFrame, random: pd.DataFrame, budgets: list[int], resamples: int) -> pd.DataFrame:
    """`table` with CEILING_COLUMNS: each budget's ceiling from its random students, the pooled
    rows' from every budget's together; empty where every network was trained under one seed."""
    if table.empty:
        return table.reindex(columns=[*table.columns, *CEILING_COLUMNS])
    random = random[random["budget"].isin(budgets)]
    ceilings = group_ceilings(random.assign(budget=random["budget"].astype(int)), budgets, resamples)
    found = [ceilings.get(b if b == POOLED else int(b)) or {} for b in table["budget"]]
    table = table.assign(**{c: [f.get(c, np.nan) for f in found] for c in CEILING_COLUMNS[:-1]})
    ceiling = table["ceiling_tau"].astype(float)
    table["quality_of_ceiling"] = (table["quality"] / ceiling).where(ceiling > 0)
    table["seeds"] = table["seeds"].astype("Int64")
    return table


def _random_errors(random: pd.DataFrame, budget: int, proxies: pd.DataFrame, path) -> pd.Series:
    """Mean test error per candidate of the random students of `budget`, after checking that
    `proxies` (their proxies file) measured exactly these networks: each student's candidate is
    listed once, with the student's genotype. A student left out would silently shrink n."""
    students = random[random["budget"] == budget]
    if students.empty:
        raise BlockswapError(f"the students table has no random students of budget {budget}, whose proxies are {path}")
    if students["candidate"].isna().any():
        network = students.loc[students["candidate"].isna(), "network"].iloc[0]
        raise BlockswapError(
            f"random student {network} of budget {budget} has no candidate index in the students table"
        )
    students = students.assign(candidate=students["candidate"].astype(int))
    twice = sorted(set(proxies.loc[proxies["candidate"].duplicated(), "candidate"]))
    if twice:
        raise BlockswapError(f"{path} lists candidate {twice[0]} twice")
    listed = proxies.set_index("candidate")
    absent = sorted(set(students["candidate"]) - set(listed.index))
    if absent:
        raise BlockswapError(
            f"{path} has no proxies of candidate {absent[0]}, a random student of budget {budget}: "
            "it was measured on other candidates"
        )
    if "genotype" in listed:
        other = students[students["genotype"].to_numpy() != listed.loc[students["candidate"], "genotype"].to_numpy()]
        if len(other):
            raise BlockswapError(
                f"{path}: candidate {other['candidate'].iloc[0]} is not the network random student "
                f"{other['network'].iloc[0]} trained: they come from different samples"
            )
    return students.groupby("candidate")["test_error"].mean()


def _with_interval(value, low, high) -> str:
    if pd.isna(value):
        return ""
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]" if pd.notna(low) else f"{value:+.3f}"


def _plain(value) -> str:
    return "" if pd.isna(value) else f"{value:+.3f}"


def _column(table: pd.DataFrame, column: str) -> pd.Series:
    """A column of the table, or an empty one where the table predates it."""
    return table[column] if column in table else pd.Series(np.nan, index=table.index)


def correlation_display(table: pd.DataFrame) -> pd.DataFrame:
    """The shoot-out as one readable table: per budget (pooled last), proxies best first by quality;
    each statistic with its 95 % bootstrap interval, and beside the quality the budget's noise
    ceiling (the largest tau any predictor reaches with the seed-mean error), the quality as a
    share of it and the seed-to-seed tau of error."""
    if table.empty:
        return table
    order = {b: i for i, b in enumerate(dict.fromkeys(table["budget"].astype(str)))}
    table = table.assign(_b=table["budget"].astype(str).map(order))
    table = table.sort_values(["_b", "quality"], ascending=[True, False], kind="stable", na_position="last")
    return pd.DataFrame(
        {
            "budget": table["budget"],
            "proxy": table["proxy"],
            "k": table["minibatches"],
            "n": table["n"],
            "quality (tau)": [
                _with_interval(*v) for v in zip(table["quality"], table["quality_low"], table["quality_high"])
            ],
            "quality / ceiling": _column(table, "quality_of_ceiling").map(_plain),
            "ceiling tau (seed mean)": _column(table, "ceiling_tau").map(_plain),
            "seed-to-seed tau": [
                _with_interval(*v)
                for v in zip(*(_column(table, c) for c in ("seed_tau", "seed_tau_low", "seed_tau_high")))
            ],
            "above params": table["above_params"].map({True: "yes", False: "no"}),
            "partial tau given params": [
                _with_interval(*v)
                for v in zip(table["partial_params"], table["partial_params_low"], table["partial_params_high"])
            ],
            "partial tau given MACs": [
                _with_interval(*v)
                for v in zip(table["partial_macs"], table["partial_macs_low"], table["partial_macs_high"])
            ],
            "spearman vs error": [
                _with_interval(*v) for v in zip(table["spearman"], table["spearman_low"], table["spearman_high"])
            ],
            "paper spearman": table["paper_spearman"].map(_plain),
        }
    ).reset_index(drop=True)


def stability_table(scorings: dict) -> pd.DataFrame:
    """Rank stability per budget and proxy: `scorings` maps a budget to the scores files of the same
    candidates under different scoring seeds (initialisation and minibatch)."""
    rows = []
    for budget, paths in scorings.items():
        if len(paths) < 2:
            raise BlockswapError(f"rank stability of budget {budget} needs two or more scorings, got {len(paths)}")
        frames = [read_scores(path, ["candidate", "params", "macs"])[0] for path in paths]
        candidates = sorted(frames[0]["candidate"])
        for path, frame in zip(paths, frames):
            if sorted(frame["candidate"]) != candidates:
                raise BlockswapError(
                    f"{path} scored other candidates than {paths[0]}: the scorings of one budget "
                    "must cover the same candidates"
                )
            if list(frame.columns) != list(frames[0].columns):
                raise BlockswapError(f"{path} has other columns than {paths[0]}: score them with the same --proxies")
        measures = [Measure(p, k, c, higher_is_better(p)) for p, k, c in proxy_columns(frames[0]) if k > 0]
        rows += stability(frames, measures, int(budget))
    return pd.DataFrame(rows)


def proxy_costs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Seconds per candidate of each proxy (the `seconds_<proxy>` columns of scores files; Table 1's
    accuracy, l2_norm and grad_norm share the Fisher pass): n candidates, median, mean and max over
    every file given."""
    frames = [read_scores(path, ["candidate"])[0] for path in paths]
    frame = pd.concat(frames, ignore_index=True)
    rows = []
    for column in (c for c in frame.columns if c.startswith(TIMING_PREFIX)):
        values = frame[column].to_numpy(float)
        rows.append(
            {
                "proxy": column.removeprefix(TIMING_PREFIX),
                "n": len(values),
                "median s": float(np.median(values)),
                "mean s": float(values.mean()),
                "max s": float(values.max()),
            }
        )
    if not rows:
        raise BlockswapError(
            f"{paths[0]} records no seconds per proxy (seconds_<proxy> columns): score it again "
            "with this version of blockswap"
        )
    return pd.DataFrame(rows).sort_values("median s", kind="stable").reset_index(drop=True)


# The kind of each column of a correlation table (validation.EXPECTED): statistics may be empty where a
# group of networks is too small or a proxy constant; `budget` is a budget or "pooled".
CORRELATION_REQUIRED = ["budget", "proxy", "minibatches", "n", "quality", "quality_low", "quality_high"]


def _correlation_kind(column: str):
    known = {
        "budget": "text",
        "proxy": "text",
        "minibatches": "int",
        "n": "int",
        "above_params": "text",
        "seeds": "int?",
    }
    return known.get(column, "number?")


def read_correlation(path) -> pd.DataFrame:
    """A correlation table (`blockswap report correlation --csv`), checked."""
    return read_csv_table(path, "correlation table", _correlation_kind, CORRELATION_REQUIRED)[0]
