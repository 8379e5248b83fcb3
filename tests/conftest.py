from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RELEASED = ROOT / "tests" / "data" / "released"
GENOTYPES = ROOT / "config" / "genotypes"


@pytest.fixture
def released_dir() -> Path:
    return RELEASED
