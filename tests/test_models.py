"""Networks: shapes, intermediates for AT and Fisher, genotype handling, initialisation."""

import math

import pytest
import torch

from blockswap import BlockswapError, Genotype, build_model, parse_arch
from blockswap.networks.modules import PreActivationModule


@pytest.mark.parametrize(
    "arch,blocks", [("wrn-40-2", 18), ("wrn-16-1", 6), ("wrn-10-4", 3), ("resnet-18", 8), ("resnet-34", 16)]
)
def test_block_counts(arch, blocks):
    assert parse_arch(arch).depth == blocks
    assert len(build_model(arch).blocks) == blocks


@pytest.mark.parametrize("size", [8, 16, 32])
def test_wrn_runs_at_any_input_size(size):
    model = build_model("wrn-16-2", "G(N/4)", num_classes=7)
    out = model.forward_intermediates(torch.randn(2, 3, size, size))
    assert out.logits.shape == (2, 7)
    assert [s.shape[1] for s in out.stages] == [32, 64, 128]
    assert [s.shape[-1] for s in out.stages] == [size, size // 2, size // 4]
    assert len(out.probes) == 6 and out.probes[-1].shape == out.stages[-1].shape


def test_resnet_stages_and_imagenet_size():
    model = build_model("resnet-18", num_classes=1000)
    out = model.forward_intermediates(torch.randn(1, 3, 224, 224))
    assert out.logits.shape == (1, 1000)
    assert [tuple(s.shape[1:]) for s in out.stages] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert not any(isinstance(m, PreActivationModule) for m in model.head)  # no final BN


def test_forward_equals_intermediates_logits():
    model = build_model("wrn-10-1", seed=0).eval()
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(model(x), model.forward_intermediates(x).logits)


def test_stage_outputs_are_the_last_blocks_of_each_stage():
    model = build_model("wrn-16-1").eval()
    x = torch.randn(1, 3, 16, 16)
    seen = []
    for i in (1, 3, 5):
        model.blocks[i].register_forward_hook(lambda m, inp, out: seen.append(out[0]))
    out = model.forward_intermediates(x)
    for a, b in zip(out.stages, seen):
        assert a is b


def test_each_block_is_wrapped_by_its_own_type():
    genotype = Genotype.parse("S B(2) G(4) BG(2,4) S B(4)")
    model = build_model("wrn-16-2", genotype)
    assert [len(b.units) for b in model.blocks] == [2, 1, 2, 1, 2, 1]
    assert [b.block_type for b in model.blocks] == list(genotype)


def test_teacher_and_moonshine_defaults():
    assert {b.block_type.name for b in build_model("wrn-16-1").blocks} == {"S"}
    assert {b.block_type.name for b in build_model("wrn-16-1", "B(2)").blocks} == {"B(2)"}


@pytest.mark.parametrize(
    "arch,genotype,message",
    [
        ("wrn-16-1", "S S", "genotype has 2 block types but wrn-16-1 has 6 blocks"),
        ("wrn-16-1", "BG(2,16)", "block 0 of wrn-16-1 cannot be BG\\(2,16\\)"),
        ("wrn-16-1", "Z(3)", "unknown block type"),
        ("wrn-15-1", None, "WRN depth must be 6n\\+4"),
        ("resnet-20", None, "ResNet depth must be one of"),
        ("vgg-16", None, "unknown architecture 'vgg-16'; allowed: wrn-D-K"),
    ],
)
def test_bad_arch_or_genotype_is_a_clear_error(arch, genotype, message):
    with pytest.raises(BlockswapError, match=message):
        build_model(arch, genotype)


def test_initialisation_follows_the_paper():
    model = build_model("wrn-16-2", seed=0)
    conv = model.blocks[5].units[1][0]  # a 3x3 conv with 128 outputs
    expected = math.sqrt(2.0 / (3 * 3 * conv.out_channels))
    assert abs(conv.weight.std().item() - expected) / expected < 0.02
    bn = model.blocks[0].preacts[0][0]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(model.classifier[-1].bias == 0)


def test_seeded_initialisation_is_repeatable_and_independent_of_global_state():
    a = build_model("wrn-10-2", "G(4)", seed=3)
    torch.manual_seed(123)
    torch.randn(100)
    b = build_model("wrn-10-2", "G(4)", seed=3)
    c = build_model("wrn-10-2", "G(4)", seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_spec_travels_with_the_model():
    model = build_model("wrn-16-1", "B(2)", num_classes=100)
    assert model.spec.arch.name == "wrn-16-1" and model.spec.num_classes == 100
    assert str(model.spec.genotype) == " ".join(["B(2)"] * 6)
