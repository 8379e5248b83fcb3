"""The proxies: every training-free predictor of final error `blockswap score` can measure.

registry.py says what each proxy is (and is all this package's root loads, so that picking,
selecting and the tables need no torch); table1, gradient, data_free, activation and controls hold
the compute functions, by group; candidate.py measures a candidate's proxies along its first
minibatches. docs/proxies.md describes each proxy.
"""

from .registry import CONTROLS, FLOOR, PROXIES, Proxy, parse_proxies, stored_value

__all__ = ["CONTROLS", "FLOOR", "PROXIES", "Proxy", "parse_proxies", "stored_value"]
