"""Exact counts of the students of a pretrained ResNet: the bottleneck ResNet skeletons (50/101/152),
the zoo's blocks at bottleneck shapes and the teacher's own blocks (T, T(b)), held against PyTorch's
FlopCounterMode (MACs) and the built modules (parameters), and a skeleton of the teacher's own
blocks against the torchvision network itself."""

import random

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from blockswap import CANDIDATE_SETS, Genotype, NetworkSpec, build_model, count, parse_arch, parse_block, valid_types
from blockswap.networks.modules import build_block
from blockswap.networks.teacher_specs import ARCHS, SOURCES

OWN_BLOCKS = (parse_block("T"), parse_block("T(4)"), parse_block("T(2)"))
SKELETONS = ["resnet-18", "resnet-34", "resnet-50", "resnet-101", "resnet-152"]


def flop_counter_macs(module: torch.nn.Module, shape) -> int:
    """MACs of one forward pass by PyTorch's FlopCounterMode (2 flops per multiply-accumulate of its
    convolutions and matrix products), on the meta device: shapes only."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.eval()(torch.zeros(1, *shape, device="meta"))
    return counter.get_total_flops() // 2


def shapes_of(arch_name: str):
    """Every distinct (cin, cout, stride) of a skeleton's blocks."""
    return sorted({(s.cin, s.cout, s.stride) for s in parse_arch(arch_name).slots})


BOTTLENECK_SHAPES = shapes_of("resnet-50")  # resnet-101 and -152 repeat them
BASIC_SHAPES = shapes_of("resnet-18")


def cases():
    for bt in (*CANDIDATE_SETS["bottleneck"], parse_block("T(4)"), parse_block("T(2)")):
        for shape in BOTTLENECK_SHAPES:
            yield bt, shape
    for bt in (parse_block("T"),):
        for shape in BASIC_SHAPES:
            yield bt, shape


@pytest.mark.parametrize("size", [14, pytest.param(7, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_every_block_shape_counts_as_flop_counter_mode_and_the_module(size):
    checked = 0
    for bt, (cin, cout, stride) in cases():
        assert bt.problem_at(cin, cout, stride) is None, (bt, cin, cout)
        cost, _, _ = bt.layout(cin, cout, stride).cost(size, size)
        with torch.device("meta"):
            block = build_block(bt, cin, cout, stride)
        assert cost.params == sum(p.numel() for p in block.parameters()), (bt, cin, cout, stride)
        assert cost.macs == flop_counter_macs(block, (cin, size, size)), (bt, cin, cout, stride, size)
        checked += 1
    assert checked == 21 * len(BOTTLENECK_SHAPES) + len(BASIC_SHAPES)


def random_genotype(arch_name, rng, types):
    arch = parse_arch(arch_name)
    return Genotype.of([rng.choice(valid_types(types, s.cin, s.cout, s.stride)) for s in arch.slots])


@pytest.mark.parametrize(
    "arch,size,classes,types",
    [
        ("resnet-50", (224, 224), 1000, "bottleneck"),
        pytest.param("resnet-101", (64, 48), 7, "bottleneck", marks=pytest.mark.slow),
        pytest.param("resnet-152", (32, 32), 3, "bottleneck", marks=pytest.mark.slow),
        ("resnet-18", (40, 40), 5, "paper"),
        pytest.param("resnet-34", (224, 224), 2, "paper", marks=pytest.mark.slow),
    ],
)
def test_whole_students_count_as_flop_counter_mode(arch, size, classes, types):
    rng = random.Random(arch)
    own = [t for t in OWN_BLOCKS if all(t.problem_at(*s) is None for s in shapes_of(arch))]
    pool = (*CANDIDATE_SETS[types], *own)
    for _ in range(2):
        genotype = random_genotype(arch, rng, pool)
        spec = NetworkSpec.create(arch, genotype, classes)
        with torch.device("meta"):
            net = build_model(arch, genotype, classes)
        cost = spec.cost(size)
        assert cost.params == sum(p.numel() for p in net.parameters())
        assert cost.macs == flop_counter_macs(net, (3, *size))


# The quick lane counts one network of each kind (basic, bottleneck, wide); the slow lane all seven.
QUICK_BUILDERS = ("resnet18", "resnet50", "wide_resnet50_2")


@pytest.mark.parametrize(
    "builder", [b if b in QUICK_BUILDERS else pytest.param(b, marks=pytest.mark.slow) for b in sorted(ARCHS)]
)
def test_a_skeleton_of_own_blocks_counts_as_the_library_network(builder):
    # torchvision's published params and GMACs (224 px), and FlopCounterMode at another size.
    arch = ARCHS[builder]
    meta = torchvision.models.get_weight(arch.weights).meta
    ours = NetworkSpec.create(arch.skeleton, arch.block, 1000)
    assert ours.cost((224, 224)).params == meta["num_params"]
    assert round(ours.cost((224, 224)).macs / 1e9, 3) == meta["_ops"]
    with torch.device("meta"):
        net = SOURCES["torchvision"].build(builder, 9)
    assert NetworkSpec.create(arch.skeleton, arch.block, 9).cost((48, 40)).macs == flop_counter_macs(net, (3, 48, 40))


def test_the_hook_counter_agrees_on_bottleneck_students():
    rng = random.Random(5)
    pool = (*CANDIDATE_SETS["bottleneck"], parse_block("T(4)"))
    genotype = random_genotype("resnet-50", rng, pool)
    assert count(NetworkSpec.create("resnet-50", genotype, 4), (32, 32)) == count(
        build_model("resnet-50", genotype, 4), (32, 32)
    )


def test_bottleneck_skeletons_default_to_the_pre_activation_bottleneck():
    # genotype None is the unswapped network: B(4), He et al.'s pre-activation bottleneck, at 256..2048.
    spec = NetworkSpec.create("resnet-50", None, 1000)
    assert set(spec.genotype.names) == {"B(4)"}
    assert [(s.cin, s.cout, s.stride) for s in spec.arch.slots if s.cin != s.cout] == [
        (64, 256, 1),
        (256, 512, 2),
        (512, 1024, 2),
        (1024, 2048, 2),
    ]
    assert spec.arch.features == 2048
