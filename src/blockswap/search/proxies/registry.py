"""The proxy registry: what each training-free predictor of final error is, apart from how it is
computed.

One `Proxy` per proxy: name, sign, definition, source, what it reads, cost class, and `function`,
the compute function by name in its group's module (table1, gradient, data_free, activation,
controls; docs/proxies.md describes each). Picking, selecting, the tables and the workflow's
planning read the registry without torch; `Proxy.compute` imports the group's module when a proxy
is measured.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...errors import BlockswapError

# How a degenerate network's log-valued proxy is stored: log of zero (no signal reaches the
# output, a singular NASWOT kernel) is -inf, which no scores file may hold (validation.py: every
# number finite). It becomes the most negative finite float64, so the candidate ranks last under
# `higher_is_better` and the file stays readable. NaN and +inf have no such reading: an error.
FLOOR = -sys.float_info.max

KINDS = ("table1", "gradient", "data-free", "activation", "control")
DATA = ("minibatch", "gaussian", "ones", "none")
BATCHNORM = ("train", "bypassed", "none")
COSTS = ("free", "forward", "forward+backward", "double-backward")
GROUPS = ("table1", "gradient", "data_free", "activation", "controls")  # the modules of compute functions


@dataclass(frozen=True)
class Proxy:
    """One registry entry: a training-free predictor of final error and how it is measured.

    `higher_is_better` is the sign under which the proxy predicts LOWER final error; a rank
    correlation with error is then expected to be negative.
    """

    name: str
    higher_is_better: bool
    definition: str  # one line: what is computed
    source: str  # the paper that defines it
    labels: bool  # does it read the minibatch's labels?
    data: str  # minibatch | gaussian | ones | none
    batchnorm: str  # train (batch statistics) | bypassed | none (no forward pass)
    dtype: str  # the dtype it is computed in ("scoring" = the network's, float32 by default)
    cost: str  # free | forward | forward+backward | double-backward
    kind: str  # table1 | gradient | data-free | activation | control
    function: str  # GROUP.NAME: the compute function, a Measurement -> float, in search/proxies/GROUP.py
    needs_weight_grads: bool = False  # Table 1's shared pass: ask autograd for dL/dW too
    cost_column: str | None = None  # a control that IS a column of the candidates file

    def __post_init__(self):
        for value, allowed in ((self.kind, KINDS), (self.data, DATA), (self.batchnorm, BATCHNORM), (self.cost, COSTS)):
            if value not in allowed:
                raise BlockswapError(f"proxy {self.name}: {value!r} is not one of {', '.join(allowed)}")
        group, _, _ = self.function.partition(".")
        if group not in GROUPS:
            raise BlockswapError(f"proxy {self.name}: compute function {self.function!r} is in no group of {GROUPS}")

    @property
    def description(self) -> str:  # the name the Table 1 registry used
        return self.definition

    @property
    def own_pass(self) -> bool:
        """Measured on its own copy of the network (everything but Table 1's shared pass and the
        cost columns, which are read, not measured)."""
        return self.kind != "table1" and self.cost_column is None

    def compute_function(self) -> Callable:
        """The compute function (its group's module, and torch, are imported here)."""
        return compute_function(self.function)

    def compute(self, measurement) -> float:
        return self.compute_function()(measurement)


@functools.cache  # scoring calls each proxy once per candidate and point
def compute_function(path: str) -> Callable:
    """The function GROUP.NAME of search/proxies/GROUP.py."""
    group, _, name = path.partition(".")
    return getattr(importlib.import_module(f"{__package__}.{group}"), name)


def stored_value(proxy: Proxy, value: float, candidate: int, k: int) -> float:
    """`value` as a scores file holds it: -inf becomes FLOOR; NaN or +inf is an error."""
    value = float(value)
    if value == -math.inf:
        return FLOOR
    if not math.isfinite(value):
        raise BlockswapError(
            f"proxy {proxy.name} is {value} for candidate {candidate} at k = {k}; a scores file "
            "holds finite numbers only"
        )
    return value


# --- the entries, by group ------------------------------------------------------------------------

PAPER = "Turner et al., BlockSwap (ICLR 2020)"
ZERO_COST = "Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS (ICLR 2021)"
MELLOR = "Mellor et al., Neural Architecture Search without Training (ICML 2021)"


def _table1(name, definition, weight_grads=False):
    """Table 1 (docs/paper.md s.7): measured together in one pass on the live network; their
    values are those of the released code."""
    return Proxy(
        name,
        True,
        definition,
        PAPER,
        labels=True,
        data="minibatch",
        batchnorm="train",
        dtype="scoring",
        cost="forward+backward",
        kind="table1",
        function=f"table1.{name}",
        needs_weight_grads=weight_grads,
    )


def _gradient(name, definition, source, cost="forward+backward"):
    """zero-cost-nas's gradient-based proxies and ZiCo: one forward and backward on the minibatch."""
    return Proxy(
        name,
        True,
        definition,
        source,
        labels=True,
        data="minibatch",
        batchnorm="train",
        dtype="scoring",
        cost=cost,
        kind="gradient",
        function=f"gradient.{name}",
    )


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
        function=f"controls.{column}",
        cost_column=column,
    )


ENTRIES = [
    _table1(
        "fisher",
        "Fisher potential: sum over blocks and channels of 1/(2N) sum_n (sum_hw a*dL/da)^2 at "
        "each block's residual-branch output (the paper's choice)",
    ),
    _table1("accuracy", "training accuracy (%) on the minibatch"),
    _table1("l2_norm", "sum over weight tensors (conv, linear) of their l2 norm"),
    _table1("grad_norm", "sum over weight tensors (conv, linear) of the l2 norm of dL/dW", weight_grads=True),
    _gradient(
        "fisher_zc",
        "zero-cost-nas fisher: sum over conv/linear layers and output channels of "
        "fan_in * 0.5 mean_n (sum_hw a*dL/da)^2",
        ZERO_COST + "; Theis et al. 2018",
    ),
    _gradient(
        "snip", "sum over conv/linear weights of |theta * dL/dtheta|", ZERO_COST + "; Lee et al., SNIP (ICLR 2019)"
    ),
    _gradient(
        "grasp",
        "sum over conv/linear weights of -theta * (H dL/dtheta), H the loss Hessian",
        ZERO_COST + "; Wang et al., GraSP (ICLR 2020)",
        cost="double-backward",
    ),
    _gradient("plain", "sum over conv/linear weights of theta * dL/dtheta", ZERO_COST),
    _gradient(
        "grad_norm_zc",
        "sum over conv/linear layers of ||dL/dW||_2 (zero-cost-nas; equals Table 1's grad_norm on these networks)",
        ZERO_COST,
    ),
    _gradient(
        "zico",
        "sum over conv/linear layers of log sum_w mean|g_w| / std(g_w) over 2 half-minibatches",
        "Li et al., ZiCo (ICLR 2023)",
    ),
    Proxy(
        "synflow",
        True,
        "log10 of sum over conv/linear weights of |theta * dR/dtheta|, R = sum of the output "
        "of the |theta| network without BN on an all-ones input",
        "Tanaka et al., SynFlow (NeurIPS 2020); Abdelfattah et al. (ICLR 2021) as a NAS proxy",
        labels=False,
        data="ones",
        batchnorm="bypassed",
        dtype="float64",
        cost="forward+backward",
        kind="data-free",
        function="data_free.synflow",
    ),
    Proxy(
        "zen",
        True,
        "log mean_n ||f(x) - f(x + 0.01 eps)||_1 + sum_BN log sqrt(mean running_var), Gaussian weights and inputs",
        "Lin et al., Zen-NAS (ICCV 2021)",
        labels=False,
        data="gaussian",
        batchnorm="train",
        dtype="scoring",
        cost="forward",
        kind="data-free",
        function="data_free.zen",
    ),
    Proxy(
        "naswot",
        True,
        "log |K_H|, K_H[i,j] = ReLU units where examples i and j have the same code (x > 0)",
        MELLOR,
        labels=False,
        data="minibatch",
        batchnorm="train",
        dtype="float64",
        cost="forward",
        kind="activation",
        function="activation.naswot",
    ),
    Proxy(
        "jacob_cov",
        True,
        "-sum(log(lambda + 1e-5) + 1/(lambda + 1e-5)), lambda the eigenvalues of the "
        "correlation of per-example input Jacobians of the output sum",
        MELLOR + " (arXiv v1); Abdelfattah et al. (ICLR 2021)",
        labels=False,
        data="minibatch",
        batchnorm="train",
        dtype="scoring",
        cost="forward+backward",
        kind="activation",
        function="activation.jacob_cov",
    ),
    Proxy(
        "meco",
        True,
        "sum over layers of the minimum eigenvalue of the channel correlation of the feature "
        "map of one Gaussian example",
        "Jiang et al., MeCo (NeurIPS 2023)",
        labels=False,
        data="gaussian",
        batchnorm="train",
        dtype="scoring",
        cost="forward",
        kind="activation",
        function="activation.meco",
    ),
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
        function="controls.random_score",
    ),
]

PROXIES: dict[str, Proxy] = {}
for _proxy in ENTRIES:
    if _proxy.name in PROXIES:
        raise BlockswapError(f"proxy {_proxy.name} is registered twice")
    PROXIES[_proxy.name] = _proxy

# Cost columns of the candidates table, reported beside the proxies as controls in Table 1.
# name -> higher_is_better: under a fixed budget a larger network is predicted to err less.
CONTROLS = {p.name: p.higher_is_better for p in PROXIES.values() if p.cost_column}


def parse_proxies(names: Iterable[str]) -> list[Proxy]:
    """Registry entries for `names`, the Fisher potential first (it is always scored); a name
    given twice is kept once."""
    proxies = []
    for name in names:
        name = name.strip()
        if name not in PROXIES:
            raise BlockswapError(f"unknown proxy {name!r}; allowed: {', '.join(PROXIES)}")
        if PROXIES[name] not in proxies:
            proxies.append(PROXIES[name])
    return [PROXIES["fisher"]] + [p for p in proxies if p.name != "fisher"]
