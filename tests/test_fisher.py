"""Fisher potential against a brute-force float64 computation, and the ablation proxies."""

import random

import pytest
import torch
import torch.nn.functional as F

from blockswap import (
    CANDIDATE_SETS,
    Genotype,
    build_model,
    parse_arch,
    parse_block,
    valid_types,
)
from blockswap.search.fisher import fisher_from_probes, fisher_potential
from blockswap.search.measure import (
    ABLATION_LR,
    ABLATION_MOMENTUM,
    ABLATION_WEIGHT_DECAY,
    measure_along_training,
    measure_one_pass,
)
from blockswap.search.proxies import PROXIES

ZOO = tuple(dict.fromkeys(CANDIDATE_SETS["paper"] + CANDIDATE_SETS["released"] + (parse_block("MBConv(6)"),)))


def brute_force_fisher(model, images, labels):
    """Each block separately: its own forward pass, autograd to that probe only, Python loops.

    The probe is found independently of `forward_intermediates`: a forward hook on the block's last
    unit (docs/paper.md s.2: the residual branch's output, before the shortcut is added)."""
    model.train()  # batch statistics, as the Fisher potential is defined
    per_block = []
    for block in model.blocks:
        captured = []
        handle = block.units[-1].register_forward_hook(lambda module, inputs, output, c=captured: c.append(output))
        try:
            loss = F.cross_entropy(model(images), labels)
        finally:
            handle.remove()
        (a,) = captured
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


@pytest.mark.slow
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
    # float64 agrees with the brute force to rounding, far inside rel=1e-6 (a factor 2, a 1/N or a
    # probe after the shortcut add is off by 10% or more).
    assert max(abs(r - e) / e for r, e in zip(result.blocks, expected)) < 1e-10


def model_and_batch(seed, dtype=torch.float64, layout=torch.contiguous_format):
    genotype = Genotype.parse(EVERY_FAMILY) if seed == 0 else random_genotype("wrn-16-2", random.Random(seed))
    model = build_model("wrn-16-2", genotype, seed=seed).to(dtype=dtype, memory_format=layout)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 8, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (6,), generator=generator)
    return model, images.to(dtype).contiguous(memory_format=layout), labels


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_float32_fisher_is_the_float64_one_to_float32_rounding(seed):
    # Same weights and images in float32 (NCHW): measured 2e-7 to 1.2e-6 relative per block, so 2e-5
    # leaves a 15x margin for other CPUs and still catches anything but rounding.
    expected = brute_force_fisher(*model_and_batch(seed))
    result = fisher_potential(*model_and_batch(seed, torch.float32))
    assert max(abs(r - e) / e for r, e in zip(result.blocks, expected)) < 2e-5
    assert abs(result.total - sum(expected)) / sum(expected) < 2e-5


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_channels_last_is_identical_in_float64(seed):
    # The README's claim for the layout `blockswap score` uses: float64 NHWC = NCHW up to rounding
    # (measured < 2e-15). In float32 they differ by up to a few 1e-3 (bench/fisher_layout.py).
    nchw = fisher_potential(*model_and_batch(seed))
    nhwc = fisher_potential(*model_and_batch(seed, layout=torch.channels_last))
    assert nhwc.blocks == pytest.approx(nchw.blocks, rel=1e-12)


def test_fisher_formula_on_known_tensors():
    # Delta_c = 1/(2N) sum_n (sum_hw a*g)^2, summed over channels; N = 2, C = 2, H = 1, W = 2.
    a = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]], [[[3.0, -1.0]], [[2.0, 2.0]]]])
    g = torch.tensor([[[[1.0, 1.0]], [[5.0, 2.0]]], [[[1.0, 1.0]], [[0.5, -1.0]]]])
    # channel 0: n=0 -> 1+2 = 3, n=1 -> 3-1 = 2; channel 1: n=0 -> 2, n=1 -> 1-2 = -1
    expected = ((3**2 + 2**2) + (2**2 + (-1) ** 2)) / (2 * 2)
    (block,) = fisher_from_probes([a], [g]).tolist()
    assert block == pytest.approx(expected, rel=1e-7)


def test_every_block_family_is_covered_by_the_brute_force_check():
    assert {t.family for t in Genotype.parse(EVERY_FAMILY)} == {"S", "G", "B", "BG", "MBConv"}


def test_no_weight_gradient_is_computed():
    model = build_model("wrn-10-2", "G(4)", seed=0)
    # A parameter's tensor hook runs whenever autograd computes that parameter's gradient, whether
    # or not it is stored in .grad (torch.autograd.grad(loss, probes + weights) would not store it).
    computed = []
    for p in model.parameters():
        p.register_hook(lambda grad: computed.append(grad.shape))
    fisher_potential(model, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert all(p.grad is None for p in model.parameters())
    assert computed == []
    # The hooks do detect weight gradients: the grad_norm proxy asks for them.
    measure_one_pass(
        model, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), [PROXIES["fisher"], PROXIES["grad_norm"]]
    )
    assert len(computed) == sum(1 for p in model.parameters() if p.dim() > 1)


def test_fisher_uses_batch_statistics():
    model = build_model("wrn-10-1", seed=0).eval()
    before = model.blocks[0].preacts[0][0].running_mean.clone()
    fisher_potential(model, torch.randn(4, 3, 8, 8) + 3, torch.tensor([0, 1, 2, 3]))
    assert model.training and not torch.equal(before, model.blocks[0].preacts[0][0].running_mean)


@pytest.mark.slow
def test_proxies_after_k_minibatches():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))) for _ in range(5)]
    model = build_model("wrn-10-1", seed=0)
    at_init = fisher_potential(build_model("wrn-10-1", seed=0), *batches[0]).total
    table1 = [p for p in PROXIES.values() if p.kind == "table1"]
    results = measure_along_training(model, iter(batches), table1, [1, 3, 5])
    assert sorted(results) == [1, 3, 5]
    assert results[1][0]["fisher"] == pytest.approx(at_init, rel=1e-5)  # k = 1 is initialisation
    assert 0 <= results[5][0]["accuracy"] <= 100
    assert results[1][0]["l2_norm"] != results[5][0]["l2_norm"]  # SGD moved the weights
    assert all(results[k][0]["grad_norm"] > 0 for k in (1, 3, 5))
    assert len(results[3][1]) == 3  # per-block Fisher at each point


def brute_force_training(model, batches):
    """Table 1's ablation pass by pass, as the paper's released code ran it: per minibatch a forward,
    one backward that fills the probes' gradients (retained on forward-hooked probes) and the
    weights', the pass's Fisher potential by explicit loops, then an SGD step. Returns each pass's
    (per-block Fisher, correct, grad norm, l2 norm), measured with the weights before its step."""
    model.train()
    optimiser = torch.optim.SGD(
        model.parameters(), lr=ABLATION_LR, momentum=ABLATION_MOMENTUM, weight_decay=ABLATION_WEIGHT_DECAY
    )
    passes = []
    for images, labels in batches:
        probes = []
        handles = [
            block.units[-1].register_forward_hook(lambda module, inputs, output, c=probes: c.append(output))
            for block in model.blocks
        ]
        try:
            logits = model(images)
        finally:
            for handle in handles:
                handle.remove()
        for a in probes:
            a.retain_grad()
        optimiser.zero_grad()
        F.cross_entropy(logits, labels).backward()
        blocks = []
        for a in probes:
            n, channels = a.shape[:2]
            a, g = a.detach(), a.grad
            terms = [float((a[i, c] * g[i, c]).sum()) ** 2 for c in range(channels) for i in range(n)]
            blocks.append(sum(terms) / (2 * n))
        weights = [p for p in model.parameters() if p.dim() > 1]
        passes.append(
            (
                blocks,
                int((logits.argmax(1) == labels).sum()),
                sum(float(p.grad.norm()) for p in weights),
                sum(float(p.detach().norm()) for p in weights),
            )
        )
        optimiser.step()
    return passes


@pytest.mark.slow
def test_table1_after_k_minibatches_adds_the_k_passes_up():
    # The paper's Table 1 after k minibatches: every pass's Fisher potential (weights before its
    # own SGD step) summed over the k passes, one backward per pass.
    k = 10
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(6, 3, 8, 8, generator=generator, dtype=torch.float64),
            torch.randint(0, 10, (6,), generator=generator),
        )
        for _ in range(k)
    ]
    genotype = Genotype.parse("S G(N/4) B(2)")
    passes = brute_force_training(build_model("wrn-10-1", genotype, seed=0).double(), batches)
    model = build_model("wrn-10-1", genotype, seed=0).double()
    backwards = []

    def count_backwards(module, inputs, output):
        output.register_hook(backwards.append)  # runs once per backward through the logits

    model.classifier.register_forward_hook(count_backwards)
    table1 = [p for p in PROXIES.values() if p.kind == "table1"]
    results = measure_along_training(model, iter(batches), table1, [1, k])
    values, blocks = results[k]
    expected_blocks = [sum(column) for column in zip(*(p[0] for p in passes))]
    assert blocks == pytest.approx(expected_blocks, rel=1e-6)
    assert values["fisher"] == pytest.approx(sum(expected_blocks), rel=1e-6)
    assert values["accuracy"] == pytest.approx(100 * sum(p[1] for p in passes) / (6 * k), rel=1e-12)
    assert values["grad_norm"] == pytest.approx(sum(p[2] for p in passes), rel=1e-6)
    assert values["l2_norm"] == pytest.approx(passes[-1][3], rel=1e-9)  # the weights of pass k
    assert len(backwards) == k  # one backward per pass: the SGD step reuses the Fisher's
    # k = 1 is the Fisher potential of the freshly initialised network, to the bit.
    at_init = fisher_potential(build_model("wrn-10-1", genotype, seed=0).double(), *batches[0])
    assert results[1] == ({**results[1][0], "fisher": at_init.total}, at_init.blocks)
    # The snapshot reading is pass k alone.
    snapshot = measure_along_training(
        build_model("wrn-10-1", genotype, seed=0).double(), iter(batches), table1, [k], mode="snapshot"
    )
    assert snapshot[k][1] == pytest.approx(passes[-1][0], rel=1e-6)
    assert snapshot[k][0]["grad_norm"] == pytest.approx(passes[-1][2], rel=1e-6)
