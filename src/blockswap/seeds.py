"""Seeds derived from the configured seed, so every random stream of a run is fixed by its config."""

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. (seed, epoch) or (seed, candidate)), identical on every
    platform (numpy's SeedSequence); distinct parts give unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)
