"""Benchmark: where a scored candidate's time goes, building it afresh against the module bank.

Per WRN-40-2 candidate at the 404.2K budget, on the scoring minibatch, on any device:

- `fresh`: `build_model`'s work in its steps: build (the modules, PyTorch's default
  initialisation included), init (`models.initialise` from the candidate's seed), move (`.to` the
  device in the scoring layout), measure (`measure_candidate`, the Fisher potential's pass);
- `bank`: `search/bank.py`: build (assemble the candidate from the bank's modules, built on first
  use: a warm-up pass over the candidates builds them first), init (draw the initial values into
  the host buffer), move (one host-to-device copy and the in-place re-initialisation), measure;
- `released`: the released code's path re-enacted (bench/fisher_scoring.py: build, an extra
  one-image pass, hooks, a full backward, a per-channel loop), timed whole.

The paths take turns per candidate (a loaded machine slows them alike); every step is timed with
the device synchronised before and after; the bank's parameters and Fisher potentials are checked
to equal the fresh path's exactly. `--memory-format` as `blockswap score` (auto: channels-last on
the CPU, NCHW on a GPU); `--also-other-layout` adds the bank path in the other layout.

    python bench/bank.py --candidates 10 --batch-size 128 --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from blockswap import CANDIDATE_SETS, Genotype, parse_arch
from blockswap.devices import resolve_device
from blockswap.networks.architectures import NetworkSpec
from blockswap.networks.layers import Classifier
from blockswap.networks.models import Network, initialise
from blockswap.networks.modules import Block, build_layer, build_sequence
from blockswap.provenance import provenance
from blockswap.search.bank import ModuleBank
from blockswap.search.proxies import PROXIES
from blockswap.search.proxies.candidate import measure_candidate
from blockswap.search.sampling import CostTable, sample_candidates
from blockswap.search.scoring import MEMORY_FORMATS, ScoringSettings
from blockswap.seeds import derive_seed

ARCH = "wrn-40-2"
PARTS = ("build", "init", "move", "measure")
FISHER = [PROXIES["fisher"]]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """(seconds, result) of one call, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def measure(model, images, labels):
    results, _ = measure_candidate(model, iter([(images, labels)]), FISHER, [1])
    return results[1][0]["fisher"]


def fresh(arch, genotype, seed, layout, device, images, labels) -> tuple[dict, float, dict]:
    """`build_model(arch, genotype, 10, seed)` step by step, moved, measured."""
    times = {}

    def build():
        spec = NetworkSpec.create(arch, genotype, 10)
        blocks = [Block(bt, s.cin, s.cout, s.stride) for bt, s in zip(spec.genotype, arch.slots)]
        return Network.assemble(
            spec,
            build_sequence(arch.stem),
            blocks,
            build_sequence(arch.head),
            build_layer(Classifier(arch.features, 10)),
        )

    times["build"], model = timed(build, device)
    times["init"], _ = timed(lambda: initialise(model, torch.Generator().manual_seed(seed)), device)
    times["move"], _ = timed(lambda: model.to(device, memory_format=layout), device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    times["measure"], fisher = timed(lambda: measure(model, images, labels), device)
    return times, fisher, state


def banked(bank, genotype, seed, images, labels) -> tuple[dict, float, dict]:
    times = {}
    times["build"], model = timed(lambda: bank.assemble(genotype), bank.device)
    times["init"], _ = timed(lambda: bank.draw(seed), bank.device)
    times["move"], _ = timed(bank.place, bank.device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    times["measure"], fisher = timed(lambda: measure(model, images, labels), bank.device)
    return times, fisher, state


def summary(samples: list[dict]) -> dict:
    """Mean and median ms per part and in all, over the candidates."""
    out = {}
    for part in PARTS + ("total",):
        values = [1000 * (sum(s.values()) if part == "total" else s[part]) for s in samples]
        out[f"{part}_ms"] = round(statistics.mean(values), 3)
        out[f"{part}_median_ms"] = round(statistics.median(values), 3)
    return out


def run(device, candidates, batch_size, image_size, memory_format, other_layout, released=True) -> dict:
    """The comparison as a dict (bench/gpu.py's fisher step calls this too)."""
    from fisher_scoring import released as released_path

    arch = parse_arch(ARCH)
    size = (image_size, image_size)
    table = CostTable.build(arch, CANDIDATE_SETS["paper"], size, 10)
    genotypes = [Genotype.parse(g) for g in sample_candidates(table, 404_200, candidates, seed=0)["genotype"]]
    settings = ScoringSettings(
        arch=ARCH, dataset="-", num_classes=10, image_size=image_size, channels_last=memory_format
    ).on(device)
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, *size, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch_size,), generator=generator).to(device)
    banks = {"bank": ModuleBank(arch, 10, device, layout)}
    inputs = {"bank": images.contiguous(memory_format=layout)}
    if other_layout:
        other = torch.contiguous_format if settings.channels_last else torch.channels_last
        name = "bank_nchw" if settings.channels_last else "bank_channels_last"
        banks[name] = ModuleBank(arch, 10, device, other)
        inputs[name] = images.contiguous(memory_format=other)
    for name, bank in banks.items():  # warm-up: every module built, the allocator and kernels warm
        for genotype in genotypes:
            bank.assemble(genotype)
        measure(bank.network(genotypes[0], 0), inputs[name], labels)
    fresh(arch, genotypes[0], 0, layout, device, inputs["bank"], labels)

    samples = {"fresh": [], **{name: [] for name in banks}}
    whole = {"released": []}
    exact = {"parameters": True, "fisher": True}
    for i, genotype in enumerate(genotypes):
        seed = derive_seed(0, i)
        times, reference, state = fresh(arch, genotype, seed, layout, device, inputs["bank"], labels)
        samples["fresh"].append(times)
        for name, bank in banks.items():
            times, value, got = banked(bank, genotype, seed, inputs[name], labels)
            samples[name].append(times)
            if name == "bank":
                exact["fisher"] &= value == reference
                exact["parameters"] &= all(torch.equal(got[k], state[k]) for k in state)
        if released:
            whole["released"].append(timed(lambda: released_path(genotype, seed, images, labels, device), device)[0])
    result = {
        "arch": ARCH,
        "budget": 404_200,
        "candidates": len(genotypes),
        "batch_size": batch_size,
        "image_size": image_size,
        "device": str(device),
        "memory_format": "channels-last" if settings.channels_last else "nchw",
        "threads": torch.get_num_threads(),
        "paths": {name: summary(s) for name, s in samples.items()},
        "bank_equals_fresh": exact,
    }
    if released:
        ms = [1000 * t for t in whole["released"]]
        result["paths"]["released"] = {
            "total_ms": round(statistics.mean(ms), 3),
            "total_median_ms": round(statistics.median(ms), 3),
        }
    paths = result["paths"]
    result["fresh_over_bank"] = round(paths["fresh"]["total_ms"] / paths["bank"]["total_ms"], 3)
    if released:
        result["released_over_bank"] = round(paths["released"]["total_ms"] / paths["bank"]["total_ms"], 3)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-format", choices=list(MEMORY_FORMATS), default="auto")
    parser.add_argument("--also-other-layout", action="store_true", help="the bank path in the other layout too")
    parser.add_argument("--no-released", action="store_true", help="leave the released path out")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    result = run(
        device,
        args.candidates,
        args.batch_size,
        args.image_size,
        MEMORY_FORMATS[args.memory_format],
        args.also_other_layout,
        released=not args.no_released,
    )
    result["provenance"] = provenance(device=device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
