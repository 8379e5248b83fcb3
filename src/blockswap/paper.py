"""The paper's published numbers (PAPER.md s.6), to print beside a reproduction of its protocol."""

from __future__ import annotations

# Table 2 (CIFAR-10): (method, arch, genotype or None, P (K), Ops (M), error mean %, error std %).
# `genotype` None means all S; BlockSwap rows match by parameter count (their genotypes are the
# released ones in config/genotypes/).
TABLE2 = [
    ("teacher", "wrn-40-2", None, 2243.5, 328.3, 3.96, 0.09),
    ("reduced", "wrn-16-2", None, 691.7, 101.4, 4.78, 0.13),
    ("reduced", "wrn-40-1", None, 563.9, 83.6, 4.57, 0.07),
    ("reduced", "wrn-16-1", None, 175.1, 26.8, 7.32, 0.02),
    ("moonshine", "wrn-40-2", "MBConv(6)", 1500.9, 231.7, 5.32, 0.04),
    ("blockswap", "wrn-40-2", "811.4", 811.4, 132.5, 3.79, 0.01),
    ("blockswap", "wrn-40-2", "556.0", 556.0, 89.5, 4.17, 0.22),
    ("blockswap", "wrn-40-2", "404.2", 404.2, 92.8, 4.21, 0.13),
    ("blockswap", "wrn-40-2", "289.2", 289.2, 65.9, 4.45, 0.18),
    ("blockswap", "wrn-40-2", "217.0", 217.0, 38.8, 4.68, 0.37),
    ("blockswap", "wrn-40-2", "162.2", 162.2, 33.9, 5.17, 0.00),
]
PARAMS_MATCH_K = 0.1  # a row matches a paper row when P (K) agrees to the printed precision


def table2_match(method: str, arch: str, genotype: str, params_k: float):
    """The paper's (P, Ops, err mean, err std) for one of our Table 2 rows, or None."""
    uniform = set(genotype.split())
    for p_method, p_arch, p_genotype, p_params, p_ops, err, std in TABLE2:
        if p_method != method or p_arch != arch:
            continue
        if method == "blockswap" and abs(params_k - p_params) <= PARAMS_MATCH_K:
            return p_params, p_ops, err, std
        if method != "blockswap" and uniform == {p_genotype or "S"}:
            return p_params, p_ops, err, std
    return None
