"""torchvision's pretrained ResNet as a frozen ImageNet teacher, exercised offline with a randomly
initialised ResNet-34 saved in torchvision's format (the real weights are never fetched)."""

import fractions
import hashlib
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from helpers import one_line_error

from blockswap import build_model
from blockswap.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from blockswap.data.loader import evaluation_batches
from blockswap.data.splits import Dataset, ImageTensors
from blockswap.networks.models import PostActivationStages
from blockswap.networks.pretrained import describe, load_pretrained_teacher
from blockswap.networks.teacher_specs import ARCHS, is_pretrained_spec, parse_spec
from blockswap.training.distillation import check_compatible, distillation_loss
from blockswap.training.teachers import pretrained_metrics

OFFICIAL = "resnet34-b627a593.pth"
URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return torchvision.models.resnet34(weights=None).eval()


@pytest.fixture(scope="module")
def weights(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random-resnet34.pth"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def teacher(weights):
    return load_pretrained_teacher(f"torchvision:resnet34:{weights}", 1000, (64, 64))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under a fake $TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def images(n=2, size=64, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_agrees_with_torchvision_weights():
    assert ARCHS["resnet34"].file_name == OFFICIAL
    assert ARCHS["resnet34"].hash_prefix == "b627a593"
    for arch in ARCHS.values():
        weights = torchvision.models.get_weight(arch.weights)
        assert weights.url == arch.url
        assert weights.meta["categories"] is not None and len(weights.meta["categories"]) == arch.num_classes
        assert getattr(torchvision.models, arch.builder).__name__ == arch.builder


def test_pretrained_specs_are_recognised():
    assert is_pretrained_spec("torchvision:resnet34")
    assert is_pretrained_spec("torchvision:resnet18:/w/resnet18.pth")
    assert not is_pretrained_spec("results/teachers/wrn-40-2/seed-0")
    assert not is_pretrained_spec("resnet-34")
    assert not is_pretrained_spec(None)
    arch, path = parse_spec("torchvision:resnet34:/some/dir/w:1.pth")
    assert (arch.builder, str(path)) == ("resnet34", "/some/dir/w:1.pth")
    assert parse_spec("torchvision:resnet18") == (ARCHS["resnet18"], None)
    one_line_error(lambda: parse_spec("torchvision:vgg16"), "vgg16", "resnet18, resnet34, resnet50")
    one_line_error(lambda: parse_spec("torchvision:resnet34:"), "no weights file")


@pytest.mark.slow
def test_logits_and_stages_equal_torchvision(teacher, reference):
    x = images()
    out = teacher.forward_intermediates(x)
    with torch.no_grad():
        expected_logits = reference(x)
        h = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected_stages = []
        for section in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            h = section(h)
            expected_stages.append(h)
    assert torch.equal(out.logits, expected_logits)
    assert torch.equal(teacher(x), expected_logits)
    assert [tuple(s.shape) for s in out.stages] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    for got, want in zip(out.stages, expected_stages):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert out.probes == []


def test_teacher_is_frozen_in_eval_mode(teacher):
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    teacher.train()  # a teacher never leaves eval mode: BN keeps its pretrained statistics
    assert not any(m.training for m in teacher.modules())
    before = teacher.net.bn1.running_mean.clone()
    teacher(images(seed=1))
    assert torch.equal(teacher.net.bn1.running_mean, before)
    assert teacher.forward_intermediates(images()).logits.grad_fn is None


def test_loads_from_the_torch_hub_cache(weights, reference, hub):
    shutil.copy(weights, hub / OFFICIAL)
    teacher = load_pretrained_teacher("torchvision:resnet34", 1000, (64, 64))
    assert teacher.weights_file == (hub / OFFICIAL).resolve()
    x = images(seed=2)
    with torch.no_grad():
        assert torch.equal(teacher(x), reference(x))


def test_describe_records_file_digest_params_and_macs(weights, reference, hub):
    shutil.copy(weights, hub / OFFICIAL)
    info = describe("torchvision:resnet34")
    assert info["weights_file"] == str((hub / OFFICIAL).resolve())
    assert info["weights_sha256"] == hashlib.sha256((hub / OFFICIAL).read_bytes()).hexdigest()
    assert info["official_weights"] is False  # random weights: the digest is not b627a593...
    assert info["params"] == sum(p.numel() for p in reference.parameters()) == 21_797_672
    assert (info["arch"], info["torchvision_arch"], info["weights_url"]) == ("resnet-34", "resnet34", URL)
    assert info["at_points"] == "post-relu"

    # MACs counted independently: conv and linear layers by hand, from shapes seen by hooks.
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += module.in_channels * k * output[0].numel() // module.groups
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            reference(torch.zeros(1, 3, 96, 80))
    finally:
        for h in handles:
            h.remove()
    assert describe("torchvision:resnet34", (96, 80))["macs"] == macs
    # torchvision's published GMACs (its "_ops") for 224 px.
    assert round(info["macs"] / 1e9, 3) == torchvision.models.get_weight(info["weights"]).meta["_ops"]


def test_missing_weights_name_both_places_and_the_url(hub, tmp_path):
    cache = str(hub / OFFICIAL)
    one_line_error(
        lambda: load_pretrained_teacher("torchvision:resnet34", 1000, (224, 224)),
        cache,
        URL,
        "torchvision:resnet34:/path/to/",
    )
    missing = tmp_path / "nowhere" / "w.pth"
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{missing}", 1000, (224, 224)), str(missing), cache, URL
    )
    one_line_error(lambda: describe("torchvision:resnet34"), cache, URL)


def test_unreadable_files_are_one_clear_line(weights, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(weights.read_bytes()[:100_000])
    for path in (garbage, truncated):
        one_line_error(
            lambda path=path: load_pretrained_teacher(f"torchvision:resnet34:{path}", 1000, (64, 64)),
            str(path),
            "cannot be read as a PyTorch state dict",
            URL,
        )
    # Pickled objects besides tensors are refused by weights_only loading, never unpickled.
    pickled = tmp_path / "pickled.pth"
    torch.save({"conv1.weight": fractions.Fraction(1, 3)}, pickled)
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{pickled}", 1000, (64, 64)),
        "cannot be read",
        "weights_only=True",
    )
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{listed}", 1000, (64, 64)),
        "holds a list, not a state dict",
    )


@pytest.mark.slow
def test_state_dicts_of_the_wrong_network_are_one_clear_line(reference, tmp_path):
    state = reference.state_dict()
    renamed = dict(state)
    renamed["layer9.weight"] = renamed.pop("layer4.2.conv2.weight")
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{path}", 1000, (64, 64)),
        "1 missing (e.g. layer4.2.conv2.weight)",
        "1 unexpected (e.g. layer9.weight)",
    )
    reshaped = dict(state)
    reshaped["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    path = tmp_path / "reshaped.pth"
    torch.save(reshaped, path)
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{path}", 1000, (64, 64)),
        "layer2.0.conv1.weight has shape (128, 64, 1, 1), expected (128, 64, 3, 3)",
    )
    # A ResNet-34 file read as ResNet-18: its third and later blocks of each section are unexpected.
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet18:{path}", 1000, (64, 64)),
        "not a torchvision resnet18 state dict",
        "unexpected",
    )


def test_class_count_must_match_the_checkpoint(weights):
    one_line_error(
        lambda: load_pretrained_teacher(f"torchvision:resnet34:{weights}", 10, (32, 32)),
        "has 1000 classes but the dataset has 10",
    )


@pytest.mark.slow
def test_attention_transfer_from_the_teacher_to_our_resnet_34(teacher):
    student = build_model("resnet-34", num_classes=1000, seed=0)
    x = images(n=2, size=64, seed=3)
    labels = torch.tensor([3, 999])
    out = student.forward_intermediates(x)
    with torch.no_grad():
        target = teacher.forward_intermediates(x)
    check_compatible(out.stages, target.stages)
    at_only = distillation_loss(out.logits, labels, out.stages, target.logits, target.stages, beta=750.0)
    ce_only = distillation_loss(out.logits, labels, out.stages, target.logits, target.stages, beta=0.0)
    assert torch.isfinite(at_only) and at_only > ce_only  # four AT terms are added
    at_only.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_pretrained_metrics_evaluates_the_test_split(teacher, weights):
    # Four 32 px images; labels chosen from the teacher's own ranking so the errors are known:
    # two top-1 hits, one 4th-best (top-5 hit), one 6th-best (miss) -> 50 % top-1, 25 % top-5.
    pixels = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    data = Dataset(
        "imagenet", 1000, 32, IMAGENET_MEAN, IMAGENET_STD, None, ImageTensors(pixels, torch.zeros(4, dtype=torch.long))
    )
    ((batch, _),) = list(evaluation_batches(data, "test", 8))
    with torch.no_grad():
        ranking = teacher(batch).argsort(dim=1, descending=True)
    data.test.labels = torch.stack([ranking[0, 0], ranking[1, 0], ranking[2, 3], ranking[3, 5]])
    spec = f"torchvision:resnet34:{weights}"
    metrics = pretrained_metrics(spec, data, "cpu")
    assert metrics["test_error"] == pytest.approx(50.0)
    assert metrics["test_error_top5"] == pytest.approx(25.0)
    info = describe(spec, (32, 32))
    assert {
        k: metrics[k]
        for k in (
            "arch",
            "genotype",
            "params",
            "macs",
            "ops",
            "dataset",
            "epochs",
            "seed",
            "teacher",
            "mode",
            "tags",
            "weights_sha256",
        )
    } == {
        "arch": "resnet-34",
        "genotype": ["torchvision"],
        "params": 21_797_672,
        "macs": info["macs"],
        "ops": info["macs"],
        "dataset": "imagenet",
        "epochs": 0,
        "seed": 0,
        "teacher": None,
        "mode": "pretrained",
        "tags": {"method": "teacher", "network": "teacher"},
        "weights_sha256": info["weights_sha256"],
    }
    assert metrics["provenance"]["code_version"] == metrics["code_version"]


def at_loss_by_hand(student, teacher):
    """attention-transfer's at_loss, written out: per example the l2-normalised channel-mean of
    squares, then the mean squared difference of the two maps."""

    def at(x):
        m = x.pow(2).mean(1).reshape(x.shape[0], -1)
        return m / m.norm(dim=1, keepdim=True)

    return (at(student) - at(teacher)).pow(2).mean()


def test_teacher_stages_are_post_relu(teacher):
    out = teacher.forward_intermediates(images(size=32))
    assert isinstance(out.stages, PostActivationStages)
    assert all(s.min() >= 0 for s in out.stages)  # each section ends with relu(... + identity)
    assert teacher.arch.at_post_activation


def test_student_is_compared_after_a_relu_with_a_torchvision_teacher(teacher):
    # attention-transfer's ImageNet code compares post-ReLU group outputs on both sides; our
    # pre-activation student's stages are raw residual sums, so the AT loss takes their ReLU.
    student = build_model("resnet-18", num_classes=1000, seed=0)
    x = images(n=2, size=32, seed=5)
    labels = torch.tensor([0, 7])
    out = student.forward_intermediates(x)
    with torch.no_grad():
        target = teacher.forward_intermediates(x)
    beta = 750.0
    ce = distillation_loss(out.logits, labels, out.stages, target.logits, target.stages, beta=0.0)
    total = distillation_loss(out.logits, labels, out.stages, target.logits, target.stages, beta=beta)
    after_relu = sum(at_loss_by_hand(s.relu(), t) for s, t in zip(out.stages, target.stages))
    raw = sum(at_loss_by_hand(s, t) for s, t in zip(out.stages, target.stages))
    assert abs(after_relu - raw) > 1e-2 * raw  # the two choices are told apart
    torch.testing.assert_close(total, ce + beta * after_relu, rtol=1e-5, atol=0)
    # The student's own outputs are left as they are: its forward is unchanged.
    assert any(s.min() < 0 for s in out.stages)
    total.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_our_own_teachers_compare_raw_residual_sums_bit_for_bit():
    # CIFAR: teacher and student are both pre-activation networks of ours, compared at their raw
    # residual sums (the released BlockSwap code), with nothing added to the loss's arithmetic.
    teacher = build_model("wrn-10-2", seed=0).eval()
    student = build_model("wrn-10-2", "G(2)", seed=1)
    x = images(n=4, size=16, seed=6)
    labels = torch.tensor([1, 2, 3, 4])
    out = student.forward_intermediates(x)
    with torch.no_grad():
        target = teacher.forward_intermediates(x)
    assert type(target.stages) is list
    total = distillation_loss(out.logits, labels, out.stages, target.logits, target.stages, beta=1000.0)
    at = sum(
        (
            F.normalize(s.float().pow(2).mean(1).flatten(1), dim=1)
            - F.normalize(t.float().pow(2).mean(1).flatten(1), dim=1)
        )
        .pow(2)
        .mean()
        for s, t in zip(out.stages, target.stages)
    )
    assert torch.equal(total, F.cross_entropy(out.logits, labels) + 1000.0 * at)
