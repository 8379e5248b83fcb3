"""Tables of guided search against random sampling (docs/evolution.md): the best proxy
value found per number of evaluations, and the trained error of each method's winners."""

from __future__ import annotations

import json

import pandas as pd

from ..errors import BlockswapError
from ..search.evolution import best_so_far, read_history
from ..stats.intervals import mean_interval

# Evaluation counts at which the search-curves table shows the best proxy value found so far
# (the figure draws every count); the last evaluation is always shown.
EVALUATION_MARKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
COMPARED_METHODS = ("random", "evolution")


def read_histories(paths) -> dict:
    """Search histories (`blockswap search --out`) by (budget, method) -> {search seed: best so far},
    checked to compare: one proxy, one sign, one number of evaluations and one scoring setup per
    budget, and each (budget, method, seed) once."""

    curves, setups = {}, {}
    for path in paths:
        frame, record = read_history(path)
        search = record["search"]
        budget, method, seed = int(search["budget"]), search["method"], int(search["seed"])
        setup = (
            search["proxy"],
            search["higher_is_better"],
            search["samples"],
            search["budget_kind"],
            search["tolerance"],
            json.dumps(record.get("scoring"), sort_keys=True),
            record.get("arch"),
        )
        first = setups.setdefault(budget, (setup, path))
        if first[0] != setup:
            raise BlockswapError(
                f"{path} and {first[1]} searched budget {budget} with other settings (proxy, "
                "evaluations, band or scoring): their curves do not compare"
            )
        seeds = curves.setdefault((budget, method), {})
        if seed in seeds:
            raise BlockswapError(f"two histories of the {method} search of budget {budget} with seed {seed}")
        seeds[seed] = best_so_far(frame["fitness"], search["higher_is_better"])
    return {
        "curves": curves,
        "proxy": {b: s[0][0] for b, s in setups.items()},
        "higher_is_better": {b: s[0][1] for b, s in setups.items()},
    }


def search_curves(paths) -> pd.DataFrame:
    """Per budget and evaluation count: the best proxy value found so far by random search and by
    evolution (mean and 95 % interval over search seeds, n), and on how many of the seeds both
    methods ran evolution was ahead (strictly better) of random search with the same seed."""
    found = read_histories(paths)
    curves = found["curves"]
    rows = []
    for budget in sorted({b for b, _ in curves}):
        samples = max(len(c) for (b, _), seeds in curves.items() if b == budget for c in seeds.values())
        marks = [m for m in EVALUATION_MARKS if m < samples] + [samples]
        sign = 1.0 if found["higher_is_better"][budget] else -1.0
        for mark in marks:
            row = {"budget": budget, "proxy": found["proxy"][budget], "evaluations": mark}
            for method in COMPARED_METHODS:
                seeds = curves.get((budget, method), {})
                mean, low, high, n = mean_interval([c[mark - 1] for c in seeds.values()])
                row.update({f"{method} mean": mean, f"{method} low": low, f"{method} high": high, f"{method} n": n})
            random, evolution = curves.get((budget, "random"), {}), curves.get((budget, "evolution"), {})
            paired = sorted(set(random) & set(evolution))
            row["evolution ahead"] = sum(sign * (evolution[s][mark - 1] - random[s][mark - 1]) > 0 for s in paired)
            row["paired seeds"] = len(paired)
            rows.append(row)
    return pd.DataFrame(rows)


def _error_rows(students: pd.DataFrame, keys: list[str]) -> list[dict]:
    rows = []
    for key, group in students.groupby(keys, sort=True):
        mean, low, high, n = mean_interval(group["test_error"])
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                "error mean": round(mean, 2),
                "error low": round(low, 2),
                "error high": round(high, 2),
                "n": n,
                "search seeds": group["network"].nunique(),
                "proxy of winner (mean)": group["fisher"].mean(),
            }
        )
    return rows


def search_winners(students: pd.DataFrame) -> pd.DataFrame:
    """Per budget: the trained test error of random search's and evolution's winners (mean and 95 %
    interval over every run: search seeds x teacher seeds, n), and the mean Fisher potential of the
    winners (the `fisher` of their selection files)."""
    winners = students[students["method"].isin(["randomsearch", "evolution"])]
    if winners.empty:
        raise BlockswapError("no search winners in the students table (are comparison.seeds and .trained set?)")
    return pd.DataFrame(_error_rows(winners.astype({"budget": int}), ["budget", "method"]))


def bestof_seeds(students: pd.DataFrame) -> pd.DataFrame:
    """Best-of-N over search seeds: per budget and N, the trained test error of the proxy-best of the
    first N random candidates (mean and 95 % interval over seeds x teachers, n)."""
    best = students[students["method"] == "bestofn"]
    if best.empty:
        raise BlockswapError("no best-of-N students in the students table (is comparison.bestof set?)")
    # Networks are named bestofn-<budget>-<N>-s<seed> (plan.plan_networks).
    best = best.assign(samples=[int(name.split("-")[2]) for name in best["network"]]).astype({"budget": int})
    return pd.DataFrame(_error_rows(best, ["budget", "samples"]))
