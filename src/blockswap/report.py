"""Tables assembled from per-network result files (plain functions; the CLI and workflow call them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Union

import pandas as pd

from .errors import BlockswapError
from .provenance import atomic_write_text

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
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_table(table: pd.DataFrame, csv_path: Union[str, Path], md_path: Union[str, Path, None] = None) -> None:
    atomic_write_text(csv_path, table.to_csv(index=False))
    if md_path:
        atomic_write_text(md_path, markdown(table))


# Report name -> builder over the input files.
REPORTS = {"costs": cost_table}
