"""BlockSwap: Fisher-guided block substitution for network compression on a budget (ICLR 2020).

The public names below load on first use (PEP 562): `import blockswap` and the command line's
table and figure steps stay free of torch, whose import alone is about a second of every
workflow job's start-up.
"""

from __future__ import annotations

import importlib

from .errors import BlockswapError
from .version import __version__

# Public name -> the module that defines it.
_EXPORTS = {
    "BlockType": "networks.blocks",
    "CANDIDATE_SETS": "networks.blocks",
    "Groups": "networks.blocks",
    "candidate_set": "networks.blocks",
    "parse_block": "networks.blocks",
    "valid_types": "networks.blocks",
    "count": "networks.counting",
    "Genotype": "networks.genotype",
    "Cost": "networks.layers",
    "Network": "networks.models",
    "NetworkSpec": "networks.architectures",
    "build_model": "networks.models",
    "parse_arch": "networks.architectures",
    "FisherPotential": "search.fisher",
    "fisher_potential": "search.fisher",
    "CostTable": "search.sampling",
    "sample_candidates": "search.sampling",
}

__all__ = ["__version__", "BlockswapError", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'blockswap' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
