"""Fisher potential against a brute-force float64 computation, and the ablation proxies."""

import random

import pytest
import torch
import torch.nn.functional as F

from blockswap import CANDIDATE_SETS, Genotype, build_model, parse_arch, parse_block, valid_types
from blockswap.fisher import PROXIES, fisher_potential, measure_along_training

ZOO = tuple(dict.fromkeys(CANDIDATE_SETS["paper"] + CANDIDATE_SETS["released"] + (parse_block("MBConv(6)"),)))


def brute_force_fisher(model, images, labels):
    """Each block separately: its own forward pass, autograd to that probe only, Python loops."""
    per_block = []
    for index in range(len(model.blocks)):
        out = model.forward_intermediates(images)
        loss = F.cross_entropy(out.logits, labels)
        a = out.probes[index]
        (g,) = torch.autograd.grad(loss, a)
        a = a.detach()
        n, channels = a.shape[:2]
        block = 0.0
        for c in range(channels):
            block += sum(float((a[i, c] * g[i, c]).sum()) ** 2 for i in range(n)) / (2 * n)
        per_block.append(block)
    return per_block


def random_genotype(arch_name, rng):
    arch = parse_arch(arch_name)
    return Genotype.of([rng.choice(valid_types(ZOO, s.cin, s.cout, s.stride)) for s in arch.slots])


EVERY_FAMILY = "S G(N/4) B(2) BG(2,M/4) MBConv(6) BG(4,M/2)"


@pytest.mark.parametrize("seed", range(4))
def test_fisher_equals_brute_force_in_float64(seed):
    # Seed 0 is a fixed genotype with every family; the others are random draws from the zoo.
    genotype = Genotype.parse(EVERY_FAMILY) if seed == 0 else random_genotype("wrn-16-2", random.Random(seed))
    model = build_model("wrn-16-2", genotype, seed=seed).double()
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 8, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (6,), generator=generator)
    result = fisher_potential(model, images, labels)
    expected = brute_force_fisher(model, images, labels)
    assert result.blocks == pytest.approx(expected, rel=1e-6)
    assert result.total == pytest.approx(sum(expected), rel=1e-6)
    assert result.total > 0


def test_every_block_family_is_covered_by_the_brute_force_check():
    assert {t.family for t in Genotype.parse(EVERY_FAMILY)} == {"S", "G", "B", "BG", "MBConv"}


def test_no_weight_gradient_is_computed():
    model = build_model("wrn-10-2", "G(4)", seed=0)
    fisher_potential(model, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert all(p.grad is None for p in model.parameters())


def test_fisher_uses_batch_statistics():
    model = build_model("wrn-10-1", seed=0).eval()
    before = model.blocks[0].preacts[0][0].running_mean.clone()
    fisher_potential(model, torch.randn(4, 3, 8, 8) + 3, torch.tensor([0, 1, 2, 3]))
    assert model.training and not torch.equal(before, model.blocks[0].preacts[0][0].running_mean)


def test_proxies_after_k_minibatches():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))) for _ in range(5)]
    model = build_model("wrn-10-1", seed=0)
    at_init = fisher_potential(build_model("wrn-10-1", seed=0), *batches[0]).total
    results = measure_along_training(model, iter(batches), list(PROXIES.values()), [1, 3, 5])
    assert sorted(results) == [1, 3, 5]
    assert results[1][0]["fisher"] == pytest.approx(at_init, rel=1e-5)  # k = 1 is initialisation
    assert 0 <= results[5][0]["accuracy"] <= 100
    assert results[1][0]["l2_norm"] != results[5][0]["l2_norm"]  # SGD moved the weights
    assert all(results[k][0]["grad_norm"] > 0 for k in (1, 3, 5))
    assert len(results[3][1]) == 3  # per-block Fisher at each point
