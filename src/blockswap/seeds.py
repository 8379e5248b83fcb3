"""Seeds derived from the configured seed, so every random stream of a run is fixed by its config."""

import argparse

import numpy as np

# The largest seed a configuration may give (the configuration schema's `maximum` for seeds, search.seed
# and ablation.seeds). derive_seed takes any non-negative integer (SeedSequence hashes integers of
# any size), but a configured seed is also used raw: torch.Generator.manual_seed takes at most
# 2^64-1 and numpy's legacy RandomState (np.random.seed) at most 2^32-1, the narrowest of them.
MAX_SEED = 2**32 - 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. (seed, epoch) or (seed, candidate)), identical on every
    platform (numpy's SeedSequence); distinct parts give unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


def seed_argument(text: str) -> int:
    """argparse type of a command's --seed: a whole number from 0 to MAX_SEED, as in a configuration."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED}, got {text[:40]!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is 0 to {MAX_SEED} (2^32-1), got {seed}")
    return seed
