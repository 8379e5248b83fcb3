"""Table 1's proxies (docs/paper.md s.7): the Fisher potential and the three metrics it is compared
with. Scoring measures them together in one pass on the live network (`measure.measure_one_pass`), which
also gives the loss of the SGD step that follows; their values are those of the released code.
The compute functions here measure one of them alone, on the proxy's own copy."""

from __future__ import annotations

from ..measure import measure_one_pass
from .base import Measurement
from .registry import PROXIES


def _alone(name: str):
    def compute(m: Measurement) -> float:
        m.model.train()
        wanted = [PROXIES["fisher"]] if name == "fisher" else [PROXIES["fisher"], PROXIES[name]]
        values, _, _ = measure_one_pass(m.model, m.images, m.labels, wanted)
        return values[name]

    compute.__name__ = f"compute_{name}"
    return compute


fisher = _alone("fisher")
accuracy = _alone("accuracy")
l2_norm = _alone("l2_norm")
grad_norm = _alone("grad_norm")
