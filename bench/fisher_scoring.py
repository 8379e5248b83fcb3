"""Benchmark: Fisher-potential scoring of WRN-40-2 candidates against its floor and the released path.

For the same candidates, batch and thread count it times
- `ours`: what `blockswap score` does per candidate (assembled from the module bank and
  re-initialised from its seed, forward, activation gradients at the probes only, vectorised
  Fisher), in NHWC, scoring's layout on the CPU;
- `floor`: the network already built (same NHWC layout as ours), one plain forward pass plus one backward
  pass that computes
  activation gradients only (weights frozen, gradient taken to the input);
- `released`: the released code's path re-enacted: build, an extra single-image forward pass (it
  built masks), a forward pass with hooks, a full `loss.backward()` (every weight gradient), and a
  Python loop over channels.
Goals: ours within 1.25x of the floor, and at least 1.5x the released throughput.

    python bench/fisher_scoring.py --candidates 5 --budget 404200 --batch-size 128 --device cpu
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from blockswap import CANDIDATE_SETS, Genotype, build_model, parse_arch
from blockswap.devices import resolve_device
from blockswap.provenance import provenance
from blockswap.search.bank import ModuleBank
from blockswap.search.fisher import fisher_potential
from blockswap.search.sampling import CostTable, sample_candidates


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


NHWC = torch.channels_last  # what `blockswap score` uses on the CPU


def ours(bank, genotype, seed, images, labels):
    return fisher_potential(bank.network(genotype, seed), images.contiguous(memory_format=NHWC), labels).total


def floor(model, images, labels):
    for p in model.parameters():
        p.requires_grad_(False)
    x = images.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    torch.autograd.grad(loss, x)


def released(genotype, seed, images, labels, device):
    model = build_model("wrn-40-2", genotype, seed=seed).to(device)
    model.train()
    with torch.no_grad():  # the released code ran one image through first to create its masks
        model(torch.rand(1, *images.shape[1:], device=device))
    acts, grads = {}, {}

    def keep(index):
        def hook(module, inputs, output):
            acts[index] = output
            output.register_hook(lambda g: grads.__setitem__(index, g))

        return hook

    handles = [block.units[-1].register_forward_hook(keep(i)) for i, block in enumerate(model.blocks)]
    loss = F.cross_entropy(model(images), labels)
    loss.backward()  # every weight gradient too
    total = 0.0
    for i in sorted(acts):
        a, g = acts[i].detach(), grads[i]
        for c in range(a.shape[1]):  # per-channel Python loop
            total += float((a[:, c] * g[:, c]).sum(dim=(1, 2)).pow(2).mean() * 0.5)
    for h in handles:
        h.remove()
    return total


def timed(fn, device, repeats):
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--budget", type=float, default=404_200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = (args.image_size, args.image_size)
    table = CostTable.build(parse_arch("wrn-40-2"), CANDIDATE_SETS["paper"], size, 10)
    genotypes = [Genotype.parse(g) for g in sample_candidates(table, args.budget, args.candidates, seed=0)["genotype"]]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, *size, generator=generator).to(device)
    labels = torch.randint(0, 10, (args.batch_size,), generator=generator).to(device)

    bank = ModuleBank(parse_arch("wrn-40-2"), 10, device, NHWC)
    for genotype in genotypes:  # warm-up: every block of the bank built, allocator and kernels warm
        ours(bank, genotype, 0, images, labels)
    totals = {"ours": 0.0, "floor": 0.0, "released": 0.0}
    for i, genotype in enumerate(genotypes):
        built = build_model("wrn-40-2", genotype, seed=i).to(device, memory_format=NHWC).train()
        nhwc = images.contiguous(memory_format=NHWC)
        totals["floor"] += timed(lambda: floor(built, nhwc, labels), device, args.repeats)
        totals["ours"] += timed(lambda: ours(bank, genotype, i, images, labels), device, args.repeats)
        totals["released"] += timed(lambda: released(genotype, i, images, labels, device), device, args.repeats)
        a, b = ours(bank, genotype, i, images, labels), released(genotype, i, images, labels, device)
        # Same quantity two ways; float32 NHWC and NCHW kernels round differently (up to ~4e-3 relative;
        # identical in float64), so this is a sanity check, not the exactness test (tests/test_fisher.py).
        assert abs(a - b) <= 5e-3 * abs(a), (a, b)
    n = len(genotypes)
    report = {
        "candidates": n,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "threads": torch.get_num_threads(),
        "seconds_per_candidate": {k: round(v / n, 4) for k, v in totals.items()},
        "candidates_per_second": {k: round(n / v, 3) for k, v in totals.items()},
        "ours_over_floor": round(totals["ours"] / totals["floor"], 3),
        "speedup_over_released": round(totals["released"] / totals["ours"], 3),
        "provenance": provenance(device=device),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
