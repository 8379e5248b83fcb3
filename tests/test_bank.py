"""Scoring's module bank (search/bank.py): a candidate assembled from the bank and re-initialised in
place holds bit for bit what `build_model` gives it, for every block type of every candidate set,
in both layouts, whatever the previous candidate's measurement left behind; so every proxy scores
it exactly as a freshly built network."""

import math

import pytest
import torch

from blockswap import BlockswapError, build_model, parse_arch
from blockswap.data.loaders import load_dataset
from blockswap.networks.architectures import STANDARD, NetworkSpec
from blockswap.networks.blocks import CANDIDATE_SETS, candidate_set
from blockswap.networks.genotype import Genotype
from blockswap.search.bank import ModuleBank, Reset
from blockswap.search.proxies import PROXIES, Proxy
from blockswap.search.score_files import is_timing
from blockswap.search.scoring import Scorer, ScoringSettings

ARCH = parse_arch("wrn-16-1")
CPU = torch.device("cpu")
LAYOUTS = {"channels-last": torch.channels_last, "nchw": torch.contiguous_format}
# Every block type of every candidate set, each once, in the sets' order.
ALL_TYPES = list(dict.fromkeys(t for name in CANDIDATE_SETS for t in candidate_set(name)))


def covering_genotypes(arch, types) -> list[Genotype]:
    """Genotypes that together place every type of `types` at a slot where it can be built (S
    fills the rest, so later candidates reuse modules the earlier ones used)."""
    left, genotypes = list(types), []
    while left:
        chosen = []
        for slot in arch.slots:
            fits = [t for t in left if t.problem_at(slot.cin, slot.cout, slot.stride) is None]
            chosen.append(fits[0] if fits else STANDARD)
            if fits:
                left.remove(fits[0])
        if all(t == STANDARD for t in chosen) and STANDARD not in types:
            raise AssertionError(f"no slot of {arch.name} can hold {left}")
        genotypes.append(Genotype.of(chosen))
    return genotypes


GENOTYPES = covering_genotypes(ARCH, ALL_TYPES)


def test_the_genotypes_cover_every_block_type_of_every_candidate_set():
    placed = {t for g in GENOTYPES for t in g}
    assert placed == set(ALL_TYPES) and len(ALL_TYPES) > 20


def spoil(network):
    """What a measurement could leave on the network it measured: SGD-moved weights, moved BN
    statistics, gradients, a frozen weight, a block in eval mode, a hook."""
    with torch.no_grad():
        for p in network.parameters():
            p.mul_(1.5).add_(0.25)
            p.grad = torch.ones_like(p)
        for m in network.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(1.0)
                m.running_var.mul_(3.0)
                m.num_batches_tracked += 7
    next(network.parameters()).requires_grad_(False)
    network.blocks[-1].eval()
    network.blocks[0].register_forward_hook(lambda module, inputs, output: (2 * output[0], output[1]))


def assert_same_network(got, fresh):
    a, b = got.state_dict(), fresh.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].stride() == b[name].stride(), name
        assert torch.equal(a[name], b[name]), name
    assert all(p.requires_grad and p.grad is None for p in got.parameters())
    assert [m.training for m in got.modules()] == [m.training for m in fresh.modules()]
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in got.modules())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bank_networks_equal_fresh_builds_bit_for_bit(layout):
    """Every parameter and buffer, its layout and flags, candidate after candidate, each spoiled
    after use. Drawing in any other order than `build_model` does fails here."""
    bank = ModuleBank(ARCH, 10, CPU, LAYOUTS[layout])
    for i, genotype in enumerate(GENOTYPES + GENOTYPES[::-1]):
        network = bank.network(genotype, seed=1000 + i)
        assert_same_network(network, build_model(ARCH, genotype, 10, seed=1000 + i).to(memory_format=LAYOUTS[layout]))
        spoil(network)


def test_the_bank_builds_each_slot_and_type_once():
    bank = ModuleBank(ARCH, 10, CPU)
    first = bank.network(GENOTYPES[0], seed=0)
    again = bank.network(GENOTYPES[0], seed=1)
    parts = lambda network: [network.stem, *network.blocks, network.head, network.classifier]  # noqa: E731
    assert all(a is b for a, b in zip(parts(first), parts(again)))
    assert len(bank.blocks) == len(set(enumerate(GENOTYPES[0])))


def test_an_invalid_genotype_is_one_clear_error():
    bank = ModuleBank(ARCH, 10, CPU)
    with pytest.raises(BlockswapError, match="genotype has 2 block types but wrn-16-1 has 6 blocks"):
        bank.network(["S", "S"], seed=0)
    with pytest.raises(BlockswapError, match=r"block 0 of wrn-16-1 cannot be G\(32\)"):
        bank.network(["G(32)"] + ["S"] * 5, seed=0)


def test_a_tensor_the_initialisation_does_not_set_is_refused():
    """A module with a tensor `initial_values` leaves alone (a conv bias) would keep the previous
    candidate's value: the bank refuses to hold it."""
    with pytest.raises(BlockswapError, match=r"cannot re-initialise Conv2d\.bias"):
        Reset.of(torch.nn.Conv2d(3, 4, 3, bias=True))


# --- scores -------------------------------------------------------------------------------------

SIZE = 8


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=SIZE)


def settings(**overrides):
    base = dict(arch=ARCH.name, dataset="digits", num_classes=10, image_size=SIZE, batch_size=16, seed=3)
    return ScoringSettings(**{**base, **overrides})


def costs(genotype):
    return NetworkSpec.create(ARCH, genotype, 10).cost((SIZE, SIZE)).as_dict()


def scores(record):
    return {k: v for k, v in record.items() if not is_timing(k)}


def assert_same_scores(got, fresh):
    """Equal to the last bit (NaN-free: a scores file holds finite numbers only)."""
    assert list(got) == list(fresh)
    for column in got:
        assert got[column] == fresh[column], (column, got[column], fresh[column])
        if isinstance(got[column], float):
            assert math.isfinite(got[column])


def score_both(s, data, genotypes):
    """Each candidate scored by a bank scorer (all of them in a row, one bank) and by a scorer
    that builds every candidate afresh."""
    banked, fresh = Scorer(s, data, CPU), Scorer(s, data, CPU, fresh=True)
    assert banked.bank is not None and fresh.bank is None
    for i, genotype in enumerate(genotypes):
        yield scores(banked.score(i, genotype, costs(genotype))), scores(fresh.score(i, genotype, costs(genotype)))


@pytest.mark.slow
def test_every_proxy_scores_bank_networks_as_fresh_ones(digits):
    """Every measured proxy of the registry at k = 1 and after an SGD step (k = 2), on every block
    type: the bank's candidates score exactly as freshly built ones, several in a row."""
    measured = [name for name, proxy in PROXIES.items() if not proxy.cost_column]
    assert len(measured) > 12
    for got, fresh in score_both(settings(proxies=measured, minibatches=[1, 2]), digits, GENOTYPES):
        assert_same_scores(got, fresh)


@pytest.mark.parametrize("layout", [True, False], ids=["channels-last", "nchw"])
def test_fisher_scores_bank_networks_as_fresh_ones_in_both_layouts(digits, layout):
    s = settings(proxies=["fisher", "accuracy", "grad_norm"], minibatches=[1, 3], channels_last=layout)
    for got, fresh in score_both(s, digits, GENOTYPES):
        assert_same_scores(got, fresh)


def vandal(m) -> float:
    """A free proxy, so given the live network: it spoils it before the second minibatch's pass."""
    if m.k == 2:
        spoil(m.model)
    return 0.0


class Vandal(Proxy):
    """A registry entry whose compute function is `vandal`, defined here."""

    def compute_function(self):
        return vandal


def test_nothing_a_measurement_leaves_reaches_the_next_candidate(digits, monkeypatch):
    """SGD steps (k = 2), and a proxy that changes the measured network itself (weights, BN
    statistics, gradients, a frozen weight, eval mode, a hook): scored in a row from one bank, the
    candidates still score as each built afresh."""
    monkeypatch.setitem(
        PROXIES,
        "vandal",
        Vandal("vandal", True, "-", "-", False, "none", "none", "-", "free", "control", "controls.vandal"),
    )
    s = settings(proxies=["fisher", "vandal"], minibatches=[1, 2])
    for got, fresh in score_both(s, digits, GENOTYPES[:3] * 2):
        assert_same_scores(got, fresh)
