"""BlockSwap: Fisher-guided block substitution for network compression on a budget (ICLR 2020)."""

from .errors import BlockswapError
from .networks.blocks import (
    CANDIDATE_SETS,
    BlockType,
    Groups,
    candidate_set,
    parse_block,
    valid_types,
)
from .networks.counting import count
from .networks.genotype import Genotype
from .networks.layers import Cost
from .networks.models import Network, NetworkSpec, build_model, parse_arch
from .search.fisher import FisherPotential, fisher_potential
from .search.sampling import CostTable, sample_candidates
from .version import __version__

__all__ = [
    "__version__",
    "BlockType",
    "BlockswapError",
    "CANDIDATE_SETS",
    "Cost",
    "CostTable",
    "FisherPotential",
    "Genotype",
    "Groups",
    "Network",
    "NetworkSpec",
    "build_model",
    "candidate_set",
    "count",
    "fisher_potential",
    "parse_arch",
    "parse_block",
    "sample_candidates",
    "valid_types",
]
