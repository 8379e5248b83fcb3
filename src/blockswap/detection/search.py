"""BlockSwap on COCO: sample backbones inside the parameter band and rank them by Fisher potential.

Each candidate is a Mask R-CNN built with that backbone from its own seed; one COCO training
minibatch (the same images for every candidate, drawn from the search seed) goes through the
detector in training mode (BatchNorm on batch statistics) and the summed detection loss (RPN
objectness and box, RoI classification, box and mask) is differentiated at each backbone block's
probe; the Fisher potential (docs/paper.md s.2) is summed over the blocks. The highest wins.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import BlockswapError
from ..networks.blocks import candidate_set
from ..provenance import provenance, write_json, write_result_text
from ..search.fisher import fisher_from_probes
from ..search.sampling import sample_candidates
from ..seeds import derive_seed
from .coco import CocoDetection, collate
from .model import backbone_cost, backbone_cost_table, build_detector, detector_cost


def coco_minibatch(data: CocoDetection, batch_size: int, seed: int, device: torch.device):
    """`batch_size` training images drawn without replacement from `seed`, and their targets."""
    if batch_size > len(data):
        raise BlockswapError(f"search batch size {batch_size} is more than the {len(data)} training images")
    picks = np.random.default_rng(seed).choice(len(data), size=batch_size, replace=False)
    images, targets = collate([data[int(i)] for i in picks])
    images = [img.to(device) for img in images]
    targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    return images, targets


def detection_fisher(model, images, targets, seed: int) -> float:
    """Fisher potential of the backbone through the detection loss on one minibatch."""
    model.train()
    with torch.random.fork_rng(devices=[images[0].device] if images[0].is_cuda else []):
        torch.manual_seed(seed)  # the RPN and RoI heads sample their training boxes at random
        losses = model(images, targets)
    loss = sum(losses.values())
    probes = model.backbone.body.probes
    grads = torch.autograd.grad(loss, probes)
    return float(fisher_from_probes(probes, grads).detach().sum())


def default_budget(arch: str, reference: str) -> int:
    """The band's centre when none is given: the single-blocktype baseline's backbone params."""
    return backbone_cost(arch, reference, (224, 224))["params"]


def search_backbone(
    data: CocoDetection,
    out: Path,
    candidates_out: Path,
    arch: str,
    candidates: str,
    budget: int | None,
    reference: str,
    samples: int,
    tolerance: float,
    batch_size: int,
    seed: int,
    min_size: int,
    max_size: int,
    device: torch.device,
    log=print,
) -> dict:
    start = time.perf_counter()
    budget = budget or default_budget(arch, reference)
    table = backbone_cost_table(arch, candidate_set(candidates), (min_size, min_size))
    frame = sample_candidates(table, budget, samples, seed, "params", tolerance)
    images, targets = coco_minibatch(data, batch_size, derive_seed(seed, 1), device)
    scores = []
    for row in frame.itertuples(index=False):
        model = build_detector(arch, row.genotype, derive_seed(seed, row.candidate), min_size, max_size).to(device)
        scores.append(detection_fisher(model, images, targets, derive_seed(seed, row.candidate, 1)))
        log(f"candidate {row.candidate}: fisher {scores[-1]:.6g}")
    if not all(np.isfinite(scores)):
        raise BlockswapError("a candidate's Fisher potential is not finite; the minibatch or the sizes are unusable")
    frame["fisher"] = scores
    best = frame.loc[frame["fisher"].idxmax()]
    model = build_detector(arch, best.genotype, seed, min_size, max_size)
    record = {
        "arch": arch,
        "genotype": best.genotype.split(),
        "candidate": int(best.candidate),
        "fisher": float(best.fisher),
        "budget": int(budget),
        "tolerance": tolerance,
        "samples": samples,
        "batch_size": batch_size,
        "cost": detector_cost(model, arch, best.genotype).as_dict(),
    }
    stamp = provenance(seed=seed, device=device, seconds=time.perf_counter() - start)
    write_result_text(candidates_out, frame.to_csv(index=False), {"provenance": stamp})
    write_json(out, {**record, "provenance": stamp})
    return record
