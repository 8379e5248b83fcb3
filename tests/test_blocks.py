"""The block zoo: every registered type builds, runs forward/backward and has its analytic size."""

import pytest
import torch

from blockswap import CANDIDATE_SETS, BlockswapError, parse_block, valid_types
from blockswap.networks.blocks import BlockType, Groups
from blockswap.networks.layers import sequence_cost
from blockswap.networks.modules import Block

# The types that fit every WRN width below (the bottleneck set's BG(8,.) need wider blocks:
# test_bottleneck_shapes.py builds them at ResNet-50's).
ALL_TYPES = sorted(
    {*CANDIDATE_SETS["paper"], *CANDIDATE_SETS["released"], parse_block("MBConv(6)")}, key=lambda t: t.name
)
# (cin, cout, stride): the shapes a block meets in a WRN-40-2 (first block of a stage, later ones).
WIDTHS = [(32, 32, 1), (32, 64, 2), (64, 64, 1)]


def closed_form_params(t: BlockType, cin: int, cout: int) -> int:
    """Parameter count written out from docs/paper.md s.3, independently of the layer specs."""
    k2 = 9
    shortcut = cin * cout if cin != cout else 0
    if t.family == "S":
        return 2 * cin + 2 * cout + cin * cout * k2 + cout * cout * k2 + shortcut
    if t.family == "G":

        def unit(i, o):
            g = i // t.groups.value if t.groups.relative else t.groups.value
            return i // g * i * k2 + 2 * i + i * o

        return 2 * cin + 2 * cout + unit(cin, cout) + unit(cout, cout) + shortcut
    if t.family in ("B", "BG"):
        m = cout // t.bottleneck
        g = (m // t.groups.value if t.groups.relative else t.groups.value) if t.family == "BG" else 1
        return 2 * cin + cin * m + 2 * m + m // g * m * k2 + 2 * m + m * cout + shortcut
    if t.family == "MBConv":
        e = t.expansion * cin
        return 2 * cin + cin * e + 2 * e + e * k2 + 2 * e + e * cout + 2 * cout + shortcut
    raise AssertionError(t)


@pytest.mark.parametrize("block_type", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("cin,cout,stride", WIDTHS)
def test_block_builds_runs_and_has_its_analytic_size(block_type, cin, cout, stride):
    block = Block(block_type, cin, cout, stride)
    x = torch.randn(2, cin, 8, 8, requires_grad=True)
    out, probe = block(x)
    assert out.shape == (2, cout, 8 // stride, 8 // stride)
    assert probe.shape == out.shape
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())
    measured = sum(p.numel() for p in block.parameters())
    assert measured == closed_form_params(block_type, cin, cout)
    assert block_type.layout(cin, cout, stride).cost(8, 8)[0].params == measured


def test_probe_is_the_residual_branch_before_the_shortcut():
    block = Block(parse_block("S"), 16, 16, 1)
    x = torch.randn(2, 16, 4, 4)
    out, probe = block(x)
    torch.testing.assert_close(out, x + probe)  # identity shortcut: output = input + branch


def test_bottleneck_wrapper_has_one_unit_and_basic_two():
    assert len(Block(parse_block("B(2)"), 16, 16, 1).units) == 1
    assert len(Block(parse_block("G(4)"), 16, 16, 1).units) == 2


PAPER_NAMES = (
    "S B(2) B(4) G(2) G(4) G(8) G(16) G(N/16) G(N/8) G(N/4) G(N/2) G(N) BG(2,2) BG(2,4) BG(2,8) "
    "BG(2,16) BG(2,M/16) BG(2,M/8) BG(2,M/4) BG(2,M/2) BG(2,M)"
).split()


def test_paper_candidate_set_is_the_papers_21():
    assert [t.name for t in CANDIDATE_SETS["paper"]] == PAPER_NAMES


def test_released_candidate_set_is_the_released_23():
    names = {t.name for t in CANDIDATE_SETS["released"]}
    assert len(names) == 23
    assert names == (set(PAPER_NAMES) - {"BG(2,M)"}) | {"BG(4,M/8)", "BG(4,M/4)", "BG(4,M/2)"}


@pytest.mark.parametrize(
    "alias,paper",
    [
        ("Conv", "S"),
        ("DConvA2", "G(2)"),
        ("DConvA16", "G(16)"),
        ("DConvG16", "G(N/16)"),
        ("DConvG2", "G(N/2)"),
        ("DConv", "G(N)"),
        ("ConvB2", "B(2)"),
        ("ConvB4", "B(4)"),
        ("A4B2", "BG(2,4)"),
        ("G8B2", "BG(2,M/8)"),
        ("G2B4", "BG(4,M/2)"),
        ("G8B4", "BG(4,M/8)"),
        ("DConvB2", "BG(2,M)"),
        ("MBConv6", "MBConv(6)"),
    ],
)
def test_released_names_are_aliases(alias, paper):
    assert parse_block(alias) == parse_block(paper)
    assert parse_block(paper).name == paper


@pytest.mark.parametrize("block_type", ALL_TYPES, ids=lambda t: t.name)
def test_names_round_trip(block_type):
    assert parse_block(block_type.name) == block_type
    assert parse_block(block_type.released_name) == block_type


def test_any_integer_group_count_and_spacing_are_accepted():
    assert parse_block("G(32)").groups == Groups(32)
    assert parse_block(" BG( 2 , M/4 ) ") == parse_block("BG(2,M/4)")


@pytest.mark.parametrize("bad", ["X", "G()", "G(0)", "BG(2)", "B(N)", "conv3x3", ""])
def test_unknown_names_fail_listing_what_exists(bad):
    with pytest.raises(BlockswapError, match="allowed: S, G\\(g\\)"):
        parse_block(bad)


def test_types_that_do_not_fit_a_width_are_reported():
    assert parse_block("BG(2,16)").problem_at(16, 16) is not None  # M = 8 cannot take 16 groups
    assert parse_block("BG(2,16)").problem_at(32, 32) is None
    assert parse_block("G(3)").problem_at(16, 32) == "G(3) at 16->32 channels: 3 groups do not divide 16 channels"
    valid = valid_types(CANDIDATE_SETS["paper"], 16, 16)
    # At 16 channels M = 8: neither 16 groups nor groups of 16 channels fit; the other 19 do.
    assert set(CANDIDATE_SETS["paper"]) - set(valid) == {parse_block("BG(2,16)"), parse_block("BG(2,M/16)")}


def test_unit_internal_relus_are_free_block_relus_are_counted():
    layout = parse_block("G(4)").layout(16, 16, 1)
    unit_cost, _, _ = sequence_cost(layout.units[0], 4, 4)
    assert unit_cost.ops == unit_cost.macs
    total, _, _ = layout.cost(4, 4)
    assert total.ops - total.macs == 2 * 16 * 4 * 4  # two block-level BN-ReLUs
