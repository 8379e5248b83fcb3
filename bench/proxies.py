"""Benchmark: seconds per candidate of every proxy of the registry (docs/proxies.md), as
`blockswap score` measures them (the `seconds_<proxy>` columns of a scores file).

Samples candidates of the default configuration (config/config.yaml: WRN-16-2 on digits at
16x16, params budget, the paper's block types, minibatch 128) and scores them with every proxy
at k = 1. `seconds_fisher` is the Fisher potential's pass, which also yields Table 1's accuracy,
l2_norm and grad_norm (grad_norm adds the weight gradients to it); every other proxy is timed on
its own copy of the network (the copy included). params and macs are columns of the candidates
file: they cost nothing.

    python bench/proxies.py --candidates 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from blockswap import CANDIDATE_SETS, parse_arch
from blockswap.data.loaders import load_dataset
from blockswap.provenance import provenance
from blockswap.search.proxies import PROXIES
from blockswap.search.sampling import CostTable, sample_candidates
from blockswap.search.score_files import TIMING_PREFIX
from blockswap.search.scoring import ScoringSettings, score_candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--arch", default="wrn-16-2")
    parser.add_argument("--budget", type=float, default=100_000)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: comparable runs)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arch = parse_arch(args.arch)
    size = (args.image_size, args.image_size)
    table = CostTable.build(arch, CANDIDATE_SETS["paper"], size, 10)
    candidates = sample_candidates(table, args.budget, args.candidates, seed=0, tolerance=0.025)
    data = load_dataset("digits", image_size=args.image_size)
    names = [name for name, p in PROXIES.items() if not p.cost_column]
    settings = ScoringSettings(
        arch=arch.name,
        dataset=data.name,
        num_classes=data.num_classes,
        image_size=data.image_size,
        batch_size=args.batch_size,
        seed=0,
        proxies=names,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scored = score_candidates(candidates, settings, data, Path(tmp) / "scores.csv", progress=False)
    wall = time.perf_counter() - start
    rows = []
    for column in settings.timing_columns():
        name = column[len(TIMING_PREFIX) :]
        seconds = scored[column]
        rows.append(
            {
                "proxy": name,
                "mean_s": round(float(seconds.mean()), 4),
                "median_s": round(float(seconds.median()), 4),
                "max_s": round(float(seconds.max()), 4),
                "cost": PROXIES[name].cost,
            }
        )
    print(
        f"{len(scored)} candidates of {arch.name} ({args.budget:g} params), "
        f"digits {args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, {args.threads} thread(s), CPU; seconds per candidate:"
    )
    print(f"{'proxy':<14}{'mean':>9}{'median':>9}{'max':>9}  cost class")
    for row in rows:
        print(f"{row['proxy']:<14}{row['mean_s']:>9.4f}{row['median_s']:>9.4f}{row['max_s']:>9.4f}  {row['cost']}")
    whole = scored["seconds"]
    print(f"{'whole row':<14}{whole.mean():>9.4f}{whole.median():>9.4f}{whole.max():>9.4f}  (build, init, every proxy)")
    print("fisher's pass also gives accuracy, l2_norm and grad_norm; params and macs are candidate columns (free)")
    if args.json:
        record = {
            "rows": rows,
            "whole_mean_s": round(float(whole.mean()), 4),
            "wall_s": round(wall, 2),
            "settings": vars(args),
            "provenance": provenance(seconds=wall),
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
