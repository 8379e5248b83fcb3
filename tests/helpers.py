"""Paths shared by the test modules.

Kept out of conftest.py: conftest is pytest's plugin file, and importing it as a module
by name works only by accident of sys.path.
"""

from pathlib import Path

from blockswap.planning.plan import RELEASED_GENOTYPES

ROOT = Path(__file__).resolve().parents[1]
RELEASED = ROOT / "tests" / "data" / "released"
GENOTYPES = RELEASED_GENOTYPES
