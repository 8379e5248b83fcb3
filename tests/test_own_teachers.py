"""A user's own trained ResNet (torchvision's or timm's, fine-tuned on their classes) as the
teacher: read from a local file in its library's format, its class count from the checkpoint,
its student skeleton, and its stem and kept blocks copied into a student. Weight files are
randomly initialised networks written by tests/datafiles.py (nothing is downloaded)."""

import pytest
import timm
import torch
import torchvision
from datafiles import write_teacher_weights
from helpers import one_line_error

from blockswap import NetworkSpec, build_model
from blockswap.networks.models import PostActivationStages
from blockswap.networks.pretrained import describe, inherit_teacher_weights, load_pretrained_teacher
from blockswap.networks.teacher_specs import ARCHS, IMAGENET_MEAN, SOURCES, parse_spec

SIZE = (32, 32)


def images(n=2, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {
        "resnet18": write_teacher_weights(root / "resnet18-5.pth", "torchvision", "resnet18", 5),
        "resnet50": write_teacher_weights(root / "resnet50-3.pth", "torchvision", "resnet50", 3, seed=1),
        "timm50": write_teacher_weights(root / "model.safetensors", "timm", "resnet50", 3, seed=2),
        "timm18": write_teacher_weights(root / "timm-resnet18.pth", "timm", "resnet18", 4, seed=3),
    }


def reference(source, builder, path, classes):
    """The library's own network with the file's weights, built the library's way."""
    if source == "timm":
        net = timm.create_model(builder, pretrained=False, num_classes=classes)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, weights_only=True)
    else:
        net = getattr(torchvision.models, builder)(weights=None, num_classes=classes)
        state = torch.load(path, weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def test_both_libraries_build_every_supported_resnet_with_torchvision_names():
    # The registry's premise: timm's ResNets of these names have torchvision's layout and keys, so
    # one skeleton and one weight mapping serve both.
    assert set(SOURCES) == {"torchvision", "timm"}
    assert set(SOURCES["timm"].archs) == set(ARCHS)
    with torch.device("meta"):
        for name in ("resnet50", "wide_resnet50_2"):
            tv = getattr(torchvision.models, name)(num_classes=7).state_dict()
            tm = timm.create_model(name, pretrained=False, num_classes=7).state_dict()
            assert {k: v.shape for k, v in tv.items()} == {k: v.shape for k, v in tm.items()}


@pytest.mark.parametrize(
    "key,source,builder,classes",
    [("resnet18", "torchvision", "resnet18", 5), ("timm50", "timm", "resnet50", 3), ("timm18", "timm", "resnet18", 4)],
)
def test_a_fine_tuned_network_is_read_with_its_own_classes(files, key, source, builder, classes):
    spec = f"{source}:{builder}:{files[key]}"
    teacher = load_pretrained_teacher(spec, classes, SIZE)
    net = reference(source, builder, files[key], classes)
    x = images(seed=1)
    out = teacher.forward_intermediates(x)
    with torch.no_grad():
        assert torch.equal(out.logits, net(x))
    assert out.logits.shape == (2, classes)
    assert isinstance(out.stages, PostActivationStages) and len(out.stages) == 4
    info = describe(spec, SIZE)
    assert info["num_classes"] == classes
    assert info["params"] == sum(p.numel() for p in net.parameters())
    assert (info["source"], info["mean"], info["official_weights"]) == (source, list(IMAGENET_MEAN), False)
    # FlopCounterMode's MACs of the library's network equal our count of its skeleton of own blocks.
    arch, _ = parse_spec(spec)
    mine = NetworkSpec.create(arch.skeleton, arch.block, classes).cost(SIZE)
    assert (info["params"], info["macs"]) == (mine.params, mine.macs)


def test_wrapped_checkpoints_and_data_parallel_names_are_unwrapped(files, tmp_path):
    state = torch.load(files["resnet18"], weights_only=True)
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 12, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    teacher = load_pretrained_teacher(f"torchvision:resnet18:{wrapped}", 5, SIZE)
    direct = load_pretrained_teacher(f"torchvision:resnet18:{files['resnet18']}", 5, SIZE)
    x = images(seed=2)
    assert torch.equal(teacher(x), direct(x))


def test_unsupported_architectures_name_what_is_allowed():
    for spec, name in [("torchvision:vgg16", "vgg16"), ("timm:efficientnet_b0:/w.pth", "efficientnet_b0")]:
        one_line_error(
            lambda spec=spec: parse_spec(spec), name, "supported: resnet18, resnet34, resnet50", "timm:resnet50"
        )
    one_line_error(lambda: parse_spec("timm:resnet50"), "read from a file", "timm:resnet50:/path/to/weights")


def test_weights_of_another_network_are_one_line_naming_the_one_they_fit(files):
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{files['resnet18']}", 5, SIZE),
        "is not a torchvision resnet34 state dict",
        "it fits torchvision:resnet18",
    )
    one_line_error(
        lambda: load_pretrained_teacher(f"timm:wide_resnet50_2:{files['timm50']}", 3, SIZE),
        "is not a timm wide_resnet50_2 state dict",
        "has shape",
        "it fits timm:resnet50",
    )


def test_the_class_count_is_the_checkpoints(files):
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet50:{files['resnet50']}", 10, SIZE),
        "has 3 classes but the dataset has 10",
        "one class folder per output",
    )


def test_the_student_inherits_the_stem_and_the_kept_blocks(files):
    spec = f"torchvision:resnet50:{files['resnet50']}"
    teacher = load_pretrained_teacher(spec, 3, SIZE)
    net = teacher.net
    # Keep section 1 (blocks 0-2) and the first block of section 3; swap the rest.
    genotype = ["T(4)"] * 3 + ["BG(4,M)"] * 4 + ["T(4)"] + ["B(8)"] * 5 + ["BG(8,M)"] * 3
    student = build_model("resnet-50", genotype, 3, seed=0)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied = inherit_teacher_weights(student, teacher)
    assert copied == ["conv1", "bn1", "layer1.0", "layer1.1", "layer1.2", "layer3.0"]
    assert torch.equal(student.stem[0].weight, net.conv1.weight)
    assert torch.equal(student.stem[1][0].running_var, net.bn1.running_var)
    student.eval()
    x = images(seed=3)
    with torch.no_grad():
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        assert torch.equal(student.stem(x), stem)
        after_section_1 = net.layer1(stem)
        h = student.stem(x)
        for block in student.blocks[:3]:
            h = block(h)[0]
        assert torch.equal(h, after_section_1)
        # The kept block of section 3 is the teacher's layer3.0, whatever it is given.
        z = torch.randn(2, 512, 4, 4)
        assert torch.equal(student.blocks[7](z)[0], net.layer3[0](z))
    # The swapped blocks keep their own initialisation.
    assert torch.equal(student.state_dict()["blocks.3.units.0.0.weight"], before["blocks.3.units.0.0.weight"])


def test_a_student_of_own_blocks_only_is_the_teacher_up_to_its_classifier(files):
    spec = f"timm:resnet18:{files['timm18']}"
    teacher = load_pretrained_teacher(spec, 4, SIZE)
    student = build_model("resnet-18", "T", 4, seed=0).eval()
    inherit_teacher_weights(student, teacher)
    x = images(seed=4)
    with torch.no_grad():
        mine, theirs = student.forward_intermediates(x), teacher.forward_intermediates(x)
    for a, b in zip(mine.stages, theirs.stages):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_student_of_another_skeleton_or_block_is_refused(files):
    teacher = load_pretrained_teacher(f"torchvision:resnet50:{files['resnet50']}", 3, SIZE)
    one_line_error(
        lambda: inherit_teacher_weights(build_model("resnet-101", "B(4)", 3), teacher),
        "the student is a resnet-101",
        "resnet-50",
    )
    one_line_error(
        lambda: inherit_teacher_weights(build_model("resnet-50", ["T(2)"] + ["B(4)"] * 15, 3), teacher),
        "block 0 of the student is T(2)",
        "own blocks are T(4)",
    )
