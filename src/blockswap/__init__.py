"""BlockSwap: Fisher-guided block substitution for network compression on a budget (ICLR 2020)."""

from .blocks import CANDIDATE_SETS, BlockType, Groups, candidate_set, parse_block, valid_types
from .counting import count
from .errors import BlockswapError
from .genotype import Genotype
from .layers import Cost
from .models import Network, NetworkSpec, build_model, parse_arch

__version__ = "0.1.0"

__all__ = [
    "BlockType",
    "BlockswapError",
    "CANDIDATE_SETS",
    "Cost",
    "Genotype",
    "Groups",
    "Network",
    "NetworkSpec",
    "build_model",
    "candidate_set",
    "count",
    "parse_arch",
    "parse_block",
    "valid_types",
]
