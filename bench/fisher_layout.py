"""Measurement: how much the float32 Fisher potential depends on the memory layout (NHWC vs NCHW).

`blockswap score` runs in channels-last (NHWC) layout by default. For the same candidates, seeds
and minibatch this computes the Fisher potential of each WRN-40-2 candidate four ways: float32
NHWC (what scoring does), float32 NCHW, and float64 in both layouts (the reference), and reports
the relative differences |a - b| / |b| (max, median, all values). Also reports whether the ranking
of the candidates changes with the layout.

    OMP_NUM_THREADS=1 python bench/fisher_layout.py --candidates 20 --float64 5

Measured (2-core CPU, 1 thread, torch 2.14.1, 133 s): over 20 candidates at 404.2K, float32 NHWC vs
NCHW differ by 1.9e-3 relative (median) and 4.2e-3 (max); the worst single block by 7.1e-3. Against
float64 (5 candidates) NHWC is off by 2.1e-3 (median), NCHW by 2.6e-4: most of the difference is
the NHWC path's rounding (BatchNorm in channels-last is ~10x less exact in float32 on CPU). float64
NHWC and NCHW agree to 2e-15. The ranking of the 20 candidates is the same in both layouts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from blockswap import CANDIDATE_SETS, Genotype, build_model, parse_arch
from blockswap.provenance import provenance
from blockswap.search.fisher import fisher_potential
from blockswap.search.sampling import CostTable, sample_candidates

LAYOUTS = {"nhwc": torch.channels_last, "nchw": torch.contiguous_format}


def fisher(genotype, seed, images, labels, dtype, layout):
    model = build_model("wrn-40-2", genotype, seed=seed).to(dtype=dtype, memory_format=LAYOUTS[layout])
    return fisher_potential(model, images.to(dtype).contiguous(memory_format=LAYOUTS[layout]), labels)


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def summary(values: list[float]) -> dict:
    return {"max": max(values), "median": statistics.median(values), "n": len(values)}


def versus(rows: list[dict], a: str, b: str):
    return summary([relative(r[a], r[b]) for r in rows]) if rows else None


def ranks(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: -values[i])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--budget", type=float, default=404_200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--float64", type=int, default=None, help="how many candidates also get the float64 reference (default: all)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = (args.image_size, args.image_size)
    table = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], size, 10)
    genotypes = [Genotype.parse(g) for g in sample_candidates(table, args.budget, args.candidates, seed=0)["genotype"]]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, *size, generator=generator)
    labels = torch.randint(0, 10, (args.batch_size,), generator=generator)
    n64 = len(genotypes) if args.float64 is None else min(args.float64, len(genotypes))

    start = time.perf_counter()
    rows = []
    for i, genotype in enumerate(genotypes):
        row = {"candidate": i, "genotype": str(genotype)}
        for layout in LAYOUTS:
            result = fisher(genotype, i, images, labels, torch.float32, layout)
            row[f"f32_{layout}"] = result.total
            row[f"f32_{layout}_blocks"] = result.blocks
        if i < n64:
            for layout in LAYOUTS:
                row[f"f64_{layout}"] = fisher(genotype, i, images, labels, torch.float64, layout).total
        rows.append(row)
    seconds = time.perf_counter() - start

    layout32 = [relative(r["f32_nhwc"], r["f32_nchw"]) for r in rows]
    # Per block: the largest relative layout difference of any block score, per candidate.
    block32 = [max(relative(a, b) for a, b in zip(r["f32_nhwc_blocks"], r["f32_nchw_blocks"])) for r in rows]
    with64 = rows[:n64]
    order_nhwc, order_nchw = ranks([r["f32_nhwc"] for r in rows]), ranks([r["f32_nchw"] for r in rows])
    report = {
        "candidates": len(rows),
        "budget": args.budget,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "float32_nhwc_vs_nchw": summary(layout32),
        "float32_nhwc_vs_nchw_worst_block": summary(block32),
        "float32_nhwc_vs_float64": versus(with64, "f32_nhwc", "f64_nchw"),
        "float32_nchw_vs_float64": versus(with64, "f32_nchw", "f64_nchw"),
        "float64_nhwc_vs_nchw": versus(with64, "f64_nhwc", "f64_nchw"),
        "ranking_changes_with_layout_float32": order_nhwc != order_nchw,
        "argmax_same_float32": order_nhwc[0] == order_nchw[0],
        "per_candidate": [
            {k: (round(v, 9) if isinstance(v, float) else v) for k, v in r.items() if not k.endswith("_blocks")}
            | {"rel_f32_layout": layout32[i]}
            for i, r in enumerate(rows)
        ],
        "provenance": provenance(device=torch.device("cpu")),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
