"""Controls: what a proxy has to beat. The cost columns (a larger network under the same budget
band is predicted to err less) and a seeded random score."""

from __future__ import annotations

import numpy as np

from ...seeds import derive_seed
from .base import Measurement, Proxy, stream


def _cost(column: str):
    def compute(m: Measurement) -> float:
        return float(m.costs[column])

    compute.__name__ = f"compute_{column}"
    return compute


def _cost_control(column: str, what: str) -> Proxy:
    """Table 1's control that reads a cost column of the candidates file: no network, no data."""
    return Proxy(
        column,
        True,
        f"{what} (the candidates file's {column} column)",
        "Table 1's control",
        labels=False,
        data="none",
        batchnorm="none",
        dtype="-",
        cost="free",
        kind="control",
        compute=_cost(column),
        cost_column=column,
    )


def random_score(m: Measurement) -> float:
    """Uniform on [0, 1) from derive_seed(scoring seed, candidate, stream("random")): repeatable,
    the same in every shard, the same at every k, and independent of the network."""
    return float(np.random.default_rng(derive_seed(m.seed, m.candidate, stream("random"))).random())


ENTRIES = {
    p.name: p
    for p in [
        _cost_control("params", "trainable parameters"),
        _cost_control("macs", "multiply-accumulates"),
        Proxy(
            "random",
            True,
            "uniform [0, 1) seeded by (seed, candidate): the score of no information",
            "a baseline",
            labels=False,
            data="none",
            batchnorm="none",
            dtype="float64",
            cost="free",
            kind="control",
            compute=random_score,
        ),
    ]
}
