"""Tables assembled from per-network result files (plain functions; the CLI and workflow call them):
costs, the students table, the paper's Tables 2, 3 and 4 and the samples ablation, and the Markdown
and LaTeX forms every table is written in. The proxy shoot-out's tables are in proxy_tables, guided
search's in search_tables."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd

from ..detection import AP_NAMES, IOU_TYPES
from ..errors import BlockswapError
from ..validation import read_json_record, require
from .paper import (
    NO_OPS,
    SAMPLES_SINGLE_BLOCKTYPE,
    TABLE2_NOT_REPRODUCED,
    TABLE3_NOT_REPRODUCED,
    TABLE4,
    samples_match,
    table2_match,
    table3_match,
)
from .single_blocktype import reference_network
from .students import LATENCY_COLUMN

COST_COLUMNS = ["name", "method", "arch", "genotype", "params", "macs", "ops", "params_k", "ops_m"]
# What a cost file (`blockswap cost --out`) must hold, and as what (validation.EXPECTED).
COST_KEYS = {"arch": "text", "genotype": "names", "params": "int", "macs": "int", "ops": "int"}
# Powers of ten of the units counts are printed in.
SIZE_UNITS = {"K": 3, "M": 6, "G": 9}


def printed_size(count, unit: str, decimals: int) -> float:
    """An exact count (parameters, ops) in K, M or G as the paper prints it: the exact decimal value
    rounded to `decimals` places, ties to the even digit (docs/paper.md s.5): 217,050 -> 217.0K,
    where Python's round(217050 / 1e3, 1) gives 217.1."""
    exact = Decimal(int(count)).scaleb(-SIZE_UNITS[unit])
    return float(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))


def cost_table(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per `blockswap cost --out` file, in the paper's units (K params, M ops)."""
    rows = []
    for path in paths:
        record = read_json_record(path, "cost file")
        for key, kind in COST_KEYS.items():
            require(record, path, key, kind)
        rows.append(
            {
                "name": record.get("name") or Path(path).stem,
                "method": record.get("method", ""),
                "arch": record["arch"],
                "genotype": " ".join(record["genotype"]),
                "params": record["params"],
                "macs": record["macs"],
                "ops": record["ops"],
                "params_k": printed_size(record["params"], "K", 1),
                "ops_m": printed_size(record["ops"], "M", 1),
            }
        )
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:  # a "|" inside a cell would split it in two
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def depth_width(arch: str) -> str:
    """Table 2's D-W column: wrn-40-2 -> 40-2, resnet-34 -> 34."""
    return arch.removeprefix("wrn-").removeprefix("resnet-")


# Spread of test error over seeds: the population std (ddof 0), in Table 2 and in its figure.
ERROR_STD_DDOF = 0

TABLE2_ORDER = {
    "teacher": 0,
    "reduced": 1,
    "moonshine": 2,
    "paper-only": 3,
    "snip": 4,
    "blockswap": 5,
    "bestof": 6,
    "random": 7,
}


def error_summary(errors: pd.Series) -> dict:
    return {
        "error mean": round(errors.mean(), 2),
        "error std": round(errors.std(ddof=ERROR_STD_DDOF), 2),
        "n": len(errors),
    }


def _ordered(rows: list, size_column: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_order"] = frame["method"].map(TABLE2_ORDER)
    if "n" in frame:
        frame["n"] = frame["n"].astype("Int64")  # paper-only rows have none
    return (
        frame.sort_values(["_order", size_column], ascending=[True, False])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def note_rows(notes: Iterable[str]) -> list[dict]:
    return [{"method": "note", "network": "", "note": note} for note in notes]


def table2(students: pd.DataFrame, notes: Iterable[str] = ()) -> pd.DataFrame:
    """The paper's Table 2 layout: per network, P (K), Ops (M), test error mean +- std over seeds, n;
    the paper's own values beside ours where the row is one of its rows (CIFAR-10), the rows the
    paper trained that this repository does not reproduce (method paper-only, the paper's values
    alone), and the plan's notes (e.g. no Moonshine network near a budget) as rows of their own.
    SNIP's Ops are "-", ours as the paper's: unstructured pruning removes no layer, and the paper
    does not report them."""
    rows = []
    shown = students[~students["method"].isin(["random", "bestof"])]
    for network, group in shown.groupby("network", sort=False):
        first = group.iloc[0]
        row = {
            "D-W": depth_width(first["arch"]),
            "method": first["method"],
            "network": network,
            "genotype": first["genotype"],
            "P (K)": printed_size(first["params"], "K", 1),
            "Ops (M)": "-" if first["method"] in NO_OPS else printed_size(first["ops"], "M", 1),
            **error_summary(group["test_error"]),
        }
        if LATENCY_COLUMN in group and group[LATENCY_COLUMN].notna().any():
            row["latency (ms)"] = round(group[LATENCY_COLUMN].mean(), 3)  # measured on the evaluating machine
        match = table2_match(first["method"], first["arch"], first["genotype"], first["params"] / 1e3)
        if match is not None and first["dataset"] == "cifar10":
            p_params, p_ops, err, std = match
            row.update(
                {
                    "paper P (K)": p_params,
                    "paper Ops (M)": "-" if p_ops is None else p_ops,
                    "paper error": f"{err:.2f} +- {std:.2f}",
                }
            )
        rows.append(row)
    if not students.empty and (students["dataset"] == "cifar10").all():
        for name, dw, p_params, p_ops, err, std, source in TABLE2_NOT_REPRODUCED:
            rows.append(
                {
                    "D-W": dw,
                    "method": "paper-only",
                    "network": name,
                    "paper P (K)": p_params,
                    "paper Ops (M)": p_ops,
                    "paper error": f"{err:.2f} +- {std:.2f}",
                    "note": source,
                }
            )
    frame = _ordered(rows, "P (K)")
    return pd.concat([frame, pd.DataFrame(note_rows(notes))], ignore_index=True) if notes else frame


def table3(students: pd.DataFrame, notes: Iterable[str] = ()) -> pd.DataFrame:
    """The paper's Table 3 layout (ImageNet): per network, P (M), MACs (G), top-1 and top-5 error
    (mean over seeds, n), the paper's values beside ours, and its rows this package cannot build."""
    rows = []
    for network, group in students[students["method"] != "random"].groupby("network", sort=False):
        first = group.iloc[0]
        row = {
            "arch": first["arch"],
            "method": first["method"],
            "network": network,
            "genotype": first["genotype"],
            "P (M)": printed_size(first["params"], "M", 2),
            "Ops (G)": printed_size(first["ops"], "G", 3),  # the paper's op convention (docs/paper.md s.5)
            "top-1 error": round(group["test_error"].mean(), 2),
            "top-5 error": round(group["test_error_top5"].mean(), 2),
            "n": len(group),
        }
        match = table3_match(first["method"], first["arch"], first["genotype"], first["params"] / 1e6)
        if match is not None and first["dataset"] == "imagenet":
            row.update(dict(zip(["paper P (M)", "paper Ops (G)", "paper top-1", "paper top-5"], match)))
        rows.append(row)
    frame = _ordered(rows, "P (M)")
    return pd.concat([frame, pd.DataFrame(note_rows([*notes, *TABLE3_NOT_REPRODUCED]))], ignore_index=True)


def samples_table(
    students: pd.DataFrame,
    notes: Iterable[str] = (),
    kind: str = "params",
    tolerance: float = 0.025,
    pairing: dict[int, str] | None = None,
) -> pd.DataFrame:
    """The samples ablation: test error of the Fisher-best of the first N candidates, per N (mean
    over the ablation seeds, n), with the single-blocktype network of that size as the reference
    (`single_blocktype.reference_network`) and the paper's values where the protocol is the
    paper's (CIFAR-10, 404.2K)."""
    best = students[students["method"] == "bestof"]
    if best.empty:
        raise BlockswapError("no best-of-N students in the students table (is ablation.samples set?)")
    budget = int(best["budget"].iloc[0])
    rows, protocol_note = [], None
    for network, group in best.groupby("network", sort=False):
        first = group.iloc[0]
        n = int(network.rsplit("-", 1)[1])
        row = {
            "samples": n,
            "network": network,
            "genotype": first["genotype"],
            "candidate": first["candidate"],
            "fisher": first["fisher"],
            "params": first["params"],
            **error_summary(group["test_error"]),
        }
        paper = samples_match(n, first["dataset"], budget)
        if paper is not None:
            row["paper error"] = paper
            protocol_note = (
                f'the paper\'s "400K" budget is the {printed_size(budget, "K", 1)}K band (+-{tolerance:.1%}); '
                "each row is the mean over the teachers, as Table 2's"
            )
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values("samples").reset_index(drop=True)
    notes = [*notes, *([protocol_note] if protocol_note else [])]
    reference = reference_network(students, budget, kind, tolerance, pairing)
    if reference.network is None:
        notes = [*notes, reference.note]
    else:
        group = students[students["network"] == reference.network]
        row = {
            "samples": pd.NA,
            "network": reference.network,
            "genotype": group["genotype"].iloc[0],
            "params": group["params"].iloc[0],
            **error_summary(group["test_error"]),
            "note": reference.note,
        }
        if samples_match(1000, group["dataset"].iloc[0], budget) is not None:
            row["paper error"] = SAMPLES_SINGLE_BLOCKTYPE
        frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    frame["samples"] = frame["samples"].astype("Int64")
    return pd.concat([frame, pd.DataFrame(note_rows(notes))], ignore_index=True) if notes else frame


def table2_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std in one column, genotypes left to the CSV."""
    shown = frame.drop(columns=["genotype"], errors="ignore").copy()
    if "error mean" in shown:
        shown.insert(
            shown.columns.get_loc("error mean"),
            "error (%)",
            ["" if pd.isna(m) else f"{m:.2f} +- {s:.2f}" for m, s in zip(frame["error mean"], frame["error std"])],
        )
        shown = shown.drop(columns=["error mean", "error std"])
    return shown


def latex(table: pd.DataFrame) -> str:
    def escape(value) -> str:
        if pd.isna(value):
            return ""
        return str(value).replace("_", r"\_").replace("%", r"\%").replace("+-", r"$\pm$")

    lines = [
        r"\begin{tabular}{" + "l" * len(table.columns) + "}",
        r"\toprule",
        " & ".join(escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def significant(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats to `digits` significant digits for Markdown (proxy values are often ~1e-5)."""
    shown = table.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = ["" if pd.isna(v) else f"{v:.{digits}g}" for v in shown[column]]
    return shown


# --- Table 4: COCO detection ------------------------------------------------------------------------

TABLE4_METHODS = ("moonshine", "blockswap")  # the paper's row order


def _ap_value(record: dict, iou: str, name: str, path) -> float:
    value = record.get(iou, {}).get(name) if isinstance(record.get(iou), dict) else None
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BlockswapError(f"detection metrics {path} lack {iou} {name}")
    if not (math.isnan(value) or 0 <= value <= 100):
        raise BlockswapError(f"detection metrics {path}: {iou} {name} is {value}, not a percentage")
    return float(value)


def table4(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4 from `blockswap detection evaluate` metrics (tagged method=moonshine|blockswap): every
    number of ours (box and mask APs, params, MACs) for the CSV, and for display our box APs with
    the paper's beside them."""
    rows = []
    for path in paths:
        record = read_json_record(path, "detection metrics")
        method = record.get("tags", {}).get("method") if isinstance(record.get("tags"), dict) else None
        if method not in TABLE4_METHODS:
            raise BlockswapError(f"detection metrics {path} are not tagged method={' or method='.join(TABLE4_METHODS)}")
        cost = record.get("cost")
        if not isinstance(cost, dict) or not all(
            isinstance(cost.get(k), int) for k in ("backbone_params", "backbone_macs", "total_params", "total_macs")
        ):
            raise BlockswapError(f"detection metrics {path} lack the detector's costs")
        genotype = record.get("genotype")
        row = {
            "method": method,
            "network": TABLE4[method][0],
            "arch": record.get("arch"),
            "genotype": " ".join(genotype) if isinstance(genotype, list) else None,
            "backbone params": cost["backbone_params"],
            "backbone MACs": cost["backbone_macs"],
            "params": cost["total_params"],
            "MACs": cost["total_macs"],
            "epochs": record.get("epochs"),
        }
        for iou, prefix in zip(IOU_TYPES, ("box", "mask")):
            for name in AP_NAMES:
                row[f"{prefix} {name}"] = _ap_value(record, iou, name, path)
        for name, value in zip(AP_NAMES, TABLE4[method][1:]):
            row[f"paper {name}"] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    if table["method"].duplicated().any():
        raise BlockswapError(
            "Table 4 has one row per backbone; two metrics files are tagged "
            + ", ".join(table.loc[table["method"].duplicated(), "method"])
        )
    table = table.sort_values("method", key=lambda m: m.map(TABLE4_METHODS.index), kind="stable")
    table = table.reset_index(drop=True)
    shown = pd.DataFrame(
        {
            "network": table["network"],
            "backbone params (M)": table["backbone params"].map(lambda p: f"{printed_size(p, 'M', 2):.2f}"),
        }
    )
    for name in AP_NAMES:
        shown[name] = table[f"box {name}"].map(lambda v: "" if math.isnan(v) else f"{v:.1f}")
        shown[f"paper {name}"] = table[f"paper {name}"].map("{:.1f}".format)
    return table, shown
