"""Controls: what a proxy has to beat. The cost columns (a larger network under the same budget
band is predicted to err less) and a seeded random score."""

from __future__ import annotations

import numpy as np

from ...seeds import derive_seed
from .base import Measurement, stream


def _cost(column: str):
    def compute(m: Measurement) -> float:
        return float(m.costs[column])

    compute.__name__ = f"compute_{column}"
    return compute


def random_score(m: Measurement) -> float:
    """Uniform on [0, 1) from derive_seed(scoring seed, candidate, stream("random")): repeatable,
    the same in every shard, the same at every k, and independent of the network."""
    return float(np.random.default_rng(derive_seed(m.seed, m.candidate, stream("random"))).random())


params = _cost("params")
macs = _cost("macs")
