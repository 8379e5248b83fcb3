"""Table 1's proxies (docs/paper.md s.7): the Fisher potential and the three metrics it is compared
with. Scoring measures them together in one pass on the live network (`measure.measure_one_pass`), which
also gives the loss of the SGD step that follows; their values are those of the released code.
The compute functions here measure one of them alone, on the proxy's own copy."""

from __future__ import annotations

from ..measure import measure_one_pass
from .base import Measurement, Proxy

PAPER = "Turner et al., BlockSwap (ICLR 2020)"


def _alone(name: str, weight_grads: bool):
    def compute(m: Measurement) -> float:
        m.model.train()
        wanted = [FISHER] if name == "fisher" else [FISHER, ENTRIES[name]]
        values, _, _ = measure_one_pass(m.model, m.images, m.labels, wanted)
        return values[name]

    compute.__name__ = f"compute_{name}"
    return compute


def _entry(name, definition, weight_grads=False, cost="forward+backward"):
    return Proxy(
        name,
        True,
        definition,
        PAPER,
        labels=True,
        data="minibatch",
        batchnorm="train",
        dtype="scoring",
        cost=cost,
        kind="table1",
        compute=_alone(name, weight_grads),
        needs_weight_grads=weight_grads,
    )


FISHER = _entry(
    "fisher",
    "Fisher potential: sum over blocks and channels of 1/(2N) sum_n (sum_hw a*dL/da)^2 at "
    "each block's residual-branch output (the paper's choice)",
)
ENTRIES = {
    p.name: p
    for p in [
        FISHER,
        _entry("accuracy", "training accuracy (%) on the minibatch"),
        _entry("l2_norm", "sum over weight tensors (conv, linear) of their l2 norm"),
        _entry("grad_norm", "sum over weight tensors (conv, linear) of the l2 norm of dL/dW", weight_grads=True),
    ]
}
