"""What counts as a number in a file or a configuration: a finite real (bool is not one, though Python
counts it as an int), and a positive one. One place, imported by every reader without torch."""

from __future__ import annotations

import math
import numbers


def is_finite_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def is_positive_number(x) -> bool:
    return is_finite_number(x) and x > 0
