"""Tables assembled from per-network result files (plain functions; the CLI and workflow call them)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import pandas as pd

from .errors import BlockswapError

COST_COLUMNS = ["name", "method", "arch", "genotype", "params", "macs", "ops", "params_k", "ops_m"]


def read_json(path: Union[str, Path]) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BlockswapError(f"result file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise BlockswapError(f"result file {path} is not valid JSON: {err}") from None


def cost_table(paths: Iterable[Union[str, Path]]) -> pd.DataFrame:
    """One row per `blockswap cost --out` file, in the paper's units (K params, M ops)."""
    rows = []
    for path in paths:
        record = read_json(path)
        missing = {"arch", "genotype", "params", "macs", "ops"} - record.keys()
        if missing:
            raise BlockswapError(f"{path} is not a cost file: it lacks {', '.join(sorted(missing))}")
        rows.append(
            {
                "name": record.get("name") or Path(path).stem,
                "method": record.get("method", ""),
                "arch": record["arch"],
                "genotype": " ".join(record["genotype"]),
                "params": record["params"],
                "macs": record["macs"],
                "ops": record["ops"],
                "params_k": round(record["params"] / 1e3, 1),
                "ops_m": round(record["ops"] / 1e6, 1),
            }
        )
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


STUDENT_COLUMNS = [
    "method", "network", "arch", "genotype", "budget", "seed", "params", "macs", "ops",
    "test_error", "test_error_top5", "fisher", "candidate", "dataset",
]


def students_table(paths: Iterable[Union[str, Path]]) -> pd.DataFrame:
    """One row per trained network (`metrics.json` of `blockswap train`), teachers included."""
    rows = []
    for path in paths:
        m = read_json(path)
        if "test_error" not in m:
            raise BlockswapError(f"{path} is not a training metrics file (no test_error)")
        tags = m.get("tags", {})
        source = read_json(tags["genotype_file"]) if "genotype_file" in tags and Path(tags["genotype_file"]).is_file() else {}
        rows.append({
            "method": tags.get("method", "teacher" if m.get("teacher") is None else "student"),
            "network": tags.get("network", Path(path).parent.parent.name),
            "arch": m["arch"],
            "genotype": " ".join(m["genotype"]),
            "budget": int(tags["budget"]) if "budget" in tags else None,
            "seed": m["seed"],
            "params": m["params"],
            "macs": m["macs"],
            "ops": m["ops"],
            "test_error": m["test_error"],
            "test_error_top5": m["test_error_top5"],
            "fisher": source.get("fisher"),
            "candidate": source.get("candidate"),
            "dataset": m["dataset"],
        })
    frame = pd.DataFrame(rows, columns=STUDENT_COLUMNS)
    frame["budget"] = frame["budget"].astype("Int64")
    frame["candidate"] = frame["candidate"].astype("Int64")
    return frame.sort_values(["method", "network", "seed"], kind="stable").reset_index(drop=True)


def depth_width(arch: str) -> str:
    """Table 2's D-W column: wrn-40-2 -> 40-2, resnet-34 -> 34."""
    return arch.removeprefix("wrn-").removeprefix("resnet-")


# Spread of test error over seeds: the population std (ddof 0), in Table 2 and in its figure.
ERROR_STD_DDOF = 0

TABLE2_ORDER = {"teacher": 0, "reduced": 1, "moonshine": 2, "blockswap": 3, "random": 4}


def table2(students: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 layout: per network, P (K), Ops (M), test error mean +- std over seeds, n;
    the paper's own values beside ours where the row is one of its rows (CIFAR-10)."""
    from .paper import table2_match

    rows = []
    for network, group in students[students["method"] != "random"].groupby("network", sort=False):
        first = group.iloc[0]
        errors = group["test_error"]
        row = {
            "D-W": depth_width(first["arch"]),
            "method": first["method"],
            "network": network,
            "genotype": first["genotype"],
            "P (K)": round(first["params"] / 1e3, 1),
            "Ops (M)": round(first["ops"] / 1e6, 1),
            "error mean": round(errors.mean(), 2),
            "error std": round(errors.std(ddof=ERROR_STD_DDOF), 2),
            "n": len(group),
        }
        match = table2_match(first["method"], first["arch"], first["genotype"], first["params"] / 1e3)
        if match is not None and first["dataset"] == "cifar10":
            row.update({"paper P (K)": match[0], "paper Ops (M)": match[1], "paper error": f"{match[2]:.2f} +- {match[3]:.2f}"})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_order"] = frame["method"].map(TABLE2_ORDER)
    return frame.sort_values(["_order", "P (K)"], ascending=[True, False]).drop(columns="_order").reset_index(drop=True)


def table2_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std in one column, genotypes left to the CSV."""
    shown = frame.drop(columns=["genotype"]).copy()
    shown.insert(shown.columns.get_loc("error mean"), "error (%)",
                 [f"{m:.2f} +- {s:.2f}" for m, s in zip(frame["error mean"], frame["error std"])])
    return shown.drop(columns=["error mean", "error std"])


def latex(table: pd.DataFrame) -> str:
    def escape(value) -> str:
        if pd.isna(value):
            return ""
        return str(value).replace("_", r"\_").replace("%", r"\%").replace("+-", r"$\pm$")

    lines = [r"\begin{tabular}{" + "l" * len(table.columns) + "}", r"\toprule",
             " & ".join(escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def proxy_columns(frame: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(proxy, k, column) for every proxy column of a scores file, plus the params/macs controls."""
    cols = [("fisher", 1, "fisher")] if "fisher" in frame else []
    for column in frame.columns:
        if "@" in column:
            proxy, k = column.split("@")
            cols.append((proxy, int(k), column))
    return cols + [("params", 0, "params"), ("macs", 0, "macs")]


def correlation_table(students: pd.DataFrame, proxy_files: dict) -> pd.DataFrame:
    """Per budget and proxy: Spearman rho and Kendall tau of proxy vs final test error (mean over
    seeds) of the random students, with bootstrap confidence intervals and n (Table 1)."""
    from scipy.stats import ConstantInputWarning, kendalltau, spearmanr

    # Small resamples are often constant; their NaN rho is expected and nanpercentile skips it.
    warnings.simplefilter("ignore", ConstantInputWarning)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rows = []
    random = students[students["method"] == "random"]
    for budget, path in proxy_files.items():
        proxies = pd.read_csv(path)
        errors = random[random["budget"] == int(budget)].groupby("candidate")["test_error"].mean()
        joined = proxies.set_index("candidate").join(errors, how="inner")
        n = len(joined)
        for proxy, k, column in proxy_columns(proxies):
            x, y = joined[column].to_numpy(float), joined["test_error"].to_numpy(float)
            row = {"budget": int(budget), "proxy": proxy, "minibatches": k, "n": n}
            for name, fn in (("spearman", spearmanr), ("kendall", kendalltau)):
                value = fn(x, y)[0] if n >= 3 else float("nan")
                samples = []
                for _ in range(BOOTSTRAP_RESAMPLES if n >= 3 else 0):
                    idx = rng.integers(0, n, n)
                    samples.append(fn(x[idx], y[idx])[0])
                low, high = (np.nanpercentile(samples, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
                             if samples else (float("nan"), float("nan")))
                row.update({name: value, f"{name}_low": low, f"{name}_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


def correlation_layout(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: one row per proxy, one column per (budget, minibatches), Spearman rho."""
    if table.empty:
        return table
    # Controls (params, MACs; k = 0) do not depend on training: shown under every k.
    ks = sorted(k for k in table["minibatches"].unique() if k > 0) or [0]
    controls = table[table["minibatches"] == 0]
    table = pd.concat([table[table["minibatches"] > 0]] + [controls.assign(minibatches=k) for k in ks])
    table = table.assign(column=[f"{b} k={k}" for b, k in zip(table["budget"], table["minibatches"])])
    return table.pivot_table(index="proxy", columns="column", values="spearman", sort=False, dropna=False).round(3).reset_index()

