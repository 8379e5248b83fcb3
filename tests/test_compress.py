"""`blockswap compress` end to end in miniature: a torchvision ResNet-18 and a timm ResNet-50 (both
randomly initialised, written in their libraries' formats, with 3 classes of their own) compressed
on a tiny folder of images at 32 px. Checked: exact counts (the report's, the built student's and
FlopCounterMode's), the student's stem and kept blocks from the teacher, the exports against
PyTorch, a rerun that resumes, and bad inputs as one line with nothing written."""

import json
import re
import time
from dataclasses import asdict, replace

import numpy as np
import onnxruntime
import pytest
import torch
from datafiles import write_image_folder, write_teacher_weights
from torch.utils.flop_counter import FlopCounterMode

from blockswap import CANDIDATE_SETS, NetworkSpec, parse_arch, parse_block
from blockswap.cli import main
from blockswap.compress.pipeline import claim, prepare
from blockswap.compress.settings import CompressSettings, parse_budget
from blockswap.data.loaders import load_folder
from blockswap.deploy.export import deployable, load_torchscript
from blockswap.errors import BlockswapError
from blockswap.networks.pretrained import load_pretrained_teacher
from blockswap.networks.teacher_specs import IMAGENET_MEAN, IMAGENET_STD
from blockswap.provenance import json_digest
from blockswap.search.evolution import SearchSettings, run_search
from blockswap.search.sampling import CostTable
from blockswap.training.checkpoint import load_model
from blockswap.training.config import NEUTRAL_DEFAULTS, TrainConfig
from blockswap.training.train import Trainer

SIZE = 32
# One search of a few evaluations, two short epochs at a small learning rate (the batch-norm
# statistics of a student this young are still settling), both exports.
MINIATURE = [
    "--image-size", str(SIZE), "--samples", "4", "--epochs", "2", "--batch-size", "6",
    "--search-batch-size", "8", "--lr", "0.005", "--quiet",
]  # fmt: skip


class Inputs(dict):
    """Input files, each written when a test first asks for it (the ResNet-50 file is 94 MB)."""

    writers = {
        "resnet18": lambda root: write_teacher_weights(root / "resnet18-3.pth", "torchvision", "resnet18", 3),
        "resnet50": lambda root: write_teacher_weights(root / "model.safetensors", "timm", "resnet50", 3, seed=1),
        "images": lambda root: write_image_folder(root / "images", classes=3, per_class=16),
        "few-images": lambda root: write_image_folder(root / "few-images", classes=3, per_class=8),
        "one-class": lambda root: write_image_folder(root / "one-class", classes=1, per_class=4),
        "four-classes": lambda root: write_image_folder(root / "four-classes", classes=4, per_class=4),
    }

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, key):
        self[key] = self.writers[key](self.root)
        return self[key]

    def get(self, key, default=None):
        return self[key] if key in self.writers else default


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return Inputs(tmp_path_factory.mktemp("compress-inputs"))


def compress(capsys, *args):
    start = time.perf_counter()
    code = main(["compress", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err, time.perf_counter() - start


def flop_counter_macs(net, size) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


def held_out_images(folder):
    data = load_folder(folder, SIZE, 0)
    x = data.test.images.float() / 255
    return (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


@pytest.fixture(scope="module")
def resnet18_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compress18") / "out"
    args = [
        "--teacher", "torchvision:resnet18", "--weights", inputs["resnet18"], "--data", inputs["images"],
        "--budget", "3M", "--out", out, *MINIATURE,
    ]  # fmt: skip
    start = time.perf_counter()
    code = main(["compress", *map(str, args)])
    assert code == 0
    return out, args, time.perf_counter() - start


@pytest.mark.slow
def test_a_basic_block_teacher_is_compressed_end_to_end(resnet18_run):
    out, _, _ = resnet18_run
    report = json.loads((out / "report.json").read_text())
    teacher, student = report["teacher"], report["student"]
    # Exact counts: the teacher's are its library's (FlopCounterMode), the student's its genotype's,
    # equal to the built network's and FlopCounterMode's.
    assert teacher["params"] == 11_178_051  # torchvision's resnet18 with a 3-class fc
    spec = NetworkSpec.create("resnet-18", student["genotype"], 3)
    net, _ = load_model(out / "student")
    assert student["params"] == spec.cost((SIZE, SIZE)).params == sum(p.numel() for p in net.parameters())
    assert student["macs"] == spec.cost((SIZE, SIZE)).macs == flop_counter_macs(net, SIZE)
    assert 3e6 * 0.975 < student["params"] < 3e6 * 1.025
    assert report["classes"] == ["class-0", "class-1", "class-2"]
    assert report["search"]["evaluations"] == 4
    for key in ("teacher", "student"):
        assert 0 <= report[key]["test_error"] <= 100 and report[key]["latency_ms"] > 0
    text = (out / "report.md").read_text()
    assert "| parameters | 11.2M | " in text and "test error, top-1" in text
    assert (out / "proxy.png").stat().st_size > 0
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert metrics["inherited"] == ["conv1", "bn1"]
    assert metrics["normalisation"] == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


@pytest.mark.slow
def test_the_exports_give_the_students_logits(resnet18_run, inputs):
    out, _, _ = resnet18_run
    net, _ = load_model(out / "student")
    x = held_out_images(inputs["images"])
    with torch.inference_mode():
        expected = deployable(net)(x)
    session = onnxruntime.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"images": x.numpy()})[0]
    assert np.abs(onnx_logits - expected.numpy()).max() <= 1e-4
    with torch.inference_mode():
        script_logits = load_torchscript((out / "student.torchscript.pt").read_bytes())(x)
    assert (script_logits - expected).abs().max() <= 1e-4
    sidecar = json.loads((out / "student.onnx.provenance.json").read_text())
    assert sidecar["classes"] == ["class-0", "class-1", "class-2"] and sidecar["mean"] == list(IMAGENET_MEAN)


@pytest.mark.slow
def test_a_rerun_resumes_and_redoes_only_what_is_missing(resnet18_run, capsys):
    out, args, first = resnet18_run
    model = out / "student" / "model.pt"
    trained = model.stat().st_mtime_ns
    code, stdout, _, seconds = compress(capsys, *args)
    assert code == 0
    for stage in ("teacher", "search", "latency"):
        assert f"{stage}: done" in stdout
    assert "already trained" in stdout
    assert model.stat().st_mtime_ns == trained
    # The exports and the latency are redone, from the trained student, when they are missing.
    (out / "student.onnx").unlink()
    (out / "latency.json").unlink()
    code, stdout, _, _ = compress(capsys, *args)
    assert code == 0 and "export: onnx -> " in stdout and "export: torchscript done" in stdout
    assert model.stat().st_mtime_ns == trained
    assert seconds < first


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(resnet18_run, capsys):
    out, args, _ = resnet18_run
    changed = [a if a != "3M" else "2.5M" for a in args]
    before = (out / "compress.json").read_bytes()
    code, _, err, _ = compress(capsys, *changed)
    assert code == 2 and err.count("\n") == 1 and "holds a compression with other settings" in err
    assert (out / "compress.json").read_bytes() == before


@pytest.mark.slow
def test_a_bottleneck_teacher_is_compressed_keeping_its_first_section(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err, _ = compress(
        capsys,
        "--teacher", "timm:resnet50", "--weights", inputs["resnet50"], "--data", inputs["few-images"],
        "--budget", "12M", "--keep", "layer1,layer4.2", "--formats", "onnx", "--out", out, *MINIATURE,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    genotype = report["student"]["genotype"]
    assert genotype[:3] == ["T(4)"] * 3 and genotype[-1] == "T(4)"
    assert all(g != "T(4)" for g in genotype[3:-1])
    assert report["teacher"]["params"] == 23_514_179  # timm's resnet50 with a 3-class fc
    net, _ = load_model(out / "student")
    spec = NetworkSpec.create("resnet-50", genotype, 3)
    assert report["student"]["params"] == spec.cost((SIZE, SIZE)).params == sum(p.numel() for p in net.parameters())
    assert report["student"]["macs"] == flop_counter_macs(net, SIZE)
    assert 12e6 * 0.975 < report["student"]["params"] < 12e6 * 1.025
    metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert metrics["inherited"] == ["conv1", "bn1", "layer1.0", "layer1.1", "layer1.2", "layer4.2"]
    assert "layer1 (3 blocks): T(4)* T(4)* T(4)*" in (out / "report.md").read_text()
    assert not (out / "student.torchscript.pt").exists()


def test_the_student_starts_from_the_teachers_stem_and_kept_blocks(inputs, tmp_path):
    spec = f"torchvision:resnet18:{inputs['resnet18']}"
    config = TrainConfig(
        arch="resnet-18",
        dataset="folder",
        genotype=["T", "G(4)", "T", "S", "G(N)", "G(N)", "B(2)", "B(2)"],
        data_dir=str(inputs["images"]),
        image_size=SIZE,
        epochs=1,
        batch_size=6,
        teacher=spec,
        teacher_init=True,
    )
    trainer = Trainer(config, tmp_path / "run", torch.device("cpu"), progress=False, log=lambda *_: None)
    teacher = load_pretrained_teacher(spec, 3, (SIZE, SIZE)).net
    assert torch.equal(trainer.model.stem[0].weight, teacher.conv1.weight)
    assert torch.equal(trainer.model.stem[1][0].running_mean, teacher.bn1.running_mean)
    assert torch.equal(trainer.model.blocks[2].unit[0].weight, teacher.layer2[0].conv1.weight)
    assert torch.equal(trainer.model.blocks[2].shortcut[1].weight, teacher.layer2[0].downsample[1].weight)
    assert trainer.inherited == ["conv1", "bn1", "layer1.0", "layer2.0"]
    # The teacher's normalisation, not the folder's own statistics: the inputs its network was trained on.
    assert (trainer.data.mean, trainer.data.std) == (IMAGENET_MEAN, IMAGENET_STD)
    without = Trainer(
        TrainConfig(**{**config.__dict__, "teacher_init": False}), tmp_path / "b", torch.device("cpu"), progress=False
    )
    assert not torch.equal(without.model.stem[0].weight, teacher.conv1.weight)
    # A run that leaves teacher_init, mean and std (and cuda_graphs) at their defaults has the
    # fingerprint it has without them.
    plain = TrainConfig(arch="resnet-18", dataset="folder")
    assert {"teacher_init", "mean", "std", "cuda_graphs"} == set(NEUTRAL_DEFAULTS)
    values = {k: v for k, v in asdict(plain).items() if k not in NEUTRAL_DEFAULTS}
    assert plain.fingerprint() == json_digest(values)[:16]
    assert (
        plain.fingerprint()
        != TrainConfig(arch="resnet-18", dataset="folder", mean=[0.5] * 3, std=[0.2] * 3).fingerprint()
    )


BAD = [
    (["--teacher", "torchvision:vgg16"], "unknown torchvision teacher 'vgg16'", "resnet18, resnet34, resnet50"),
    (["--teacher", "keras:resnet50"], "unsupported teacher 'keras:resnet50'", "timm:wide_resnet50_2"),
    (["--teacher", "torchvision:resnet34"], "is not a torchvision resnet34 state dict", "it fits torchvision:resnet18"),
    (["--budget", "2K"], "outside what resnet-18 can reach", "params"),
    (["--budget", "3 apples"], "is not a params budget", "8M"),
    (["--data", "one-class"], "has 1 class folder", "at least 2"),
    (["--data", "four-classes"], "has 3 classes but the dataset has 4", "one class folder per output"),
    (["--keep", "layer5"], "is not a block of resnet18", "layer1 (.0-.1)"),
    (["--mean", "0.5,0.5"], "--mean takes three numbers", "red,green,blue"),
]


@pytest.mark.parametrize("change,message,allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_inputs_are_one_line_and_write_nothing(inputs, tmp_path, capsys, change, message, allowed):
    values = {"--teacher": "torchvision:resnet18", "--weights": inputs["resnet18"], "--data": inputs["images"]}
    values["--budget"] = "3M"
    for flag, value in zip(change[::2], change[1::2]):
        values[flag] = inputs.get(value, value)
    out = tmp_path / "out"
    args = [a for pair in values.items() for a in pair] + ["--out", out, *MINIATURE]
    code, _, err, _ = compress(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("blockswap: error: ") and "Traceback" not in err
    for pattern in (message, allowed):
        assert pattern in err, (pattern, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "text,kind,value",
    [("8M", "params", 8e6), ("800k", "params", 8e5), ("1.2G", "macs", 1.2e9), ("5ms", "latency", 5000.0)]
    + [("800us", "latency", 800.0), ("2500", "latency", 2500.0), ("3e6", "params", 3e6)],
)
def test_budgets_are_read_in_the_samplers_units(text, kind, value):
    assert parse_budget(text, kind) == pytest.approx(value)


@pytest.mark.parametrize("text,kind", [("5ms", "params"), ("8M", "latency"), ("-3M", "params"), ("0", "macs")])
def test_a_budget_in_the_wrong_unit_is_refused(text, kind):
    with pytest.raises(BlockswapError, match=f"is not a {kind} budget"):
        parse_budget(text, kind)


def test_evolution_searches_a_latency_band():
    # A cost table with a latency column (whole microseconds per type and slot): every history row
    # is inside the band, and evolution's mutants are priced in latency too.
    table = CostTable.build(parse_arch("resnet-18"), CANDIDATE_SETS["paper"], (32, 32), 3)
    slots = [np.array([10 + 7 * i for i in range(len(types))]) for types in table.types]
    table = table.with_latency(slots, 100)
    settings = SearchSettings("evolution", 400.0, 12, 0, "latency", 0.05, population=4, tournament=2)
    history = run_search(table, settings, lambda key, choice: {"fitness": float(key % 97), "fisher": 0.0, "seconds": 0})
    assert len(history) == 12 and history["parent"].notna().sum() == 8
    for genotype in history["genotype"]:
        choice = np.array([table.types[s].index(parse_block(t)) for s, t in enumerate(genotype.split())])
        assert 380 < table.totals(choice[None, :])[0][3] < 420


@pytest.mark.slow
def test_a_latency_budget_is_sampled_from_a_table_measured_here(inputs, tmp_path):
    out, cpu = tmp_path / "out", torch.device("cpu")
    settings = CompressSettings(
        teacher=f"torchvision:resnet18:{inputs['resnet18']}",
        data=str(inputs["images"]),
        budget=1.0,  # one microsecond: below any network, so the error states the reachable range
        budget_kind="latency",
        image_size=16,
        keep=(0,),
        calibration_samples=20,  # few, but enough for a held-out error that holds on a quiet machine
        latency_clock="thread",  # CI shares the machine with other work: CPU time, not wall time
        samples=4,
        search_batch_size=8,
        batch_size=6,
    )
    with pytest.raises(BlockswapError) as info:
        prepare(settings, out, cpu, lambda line: None)
    assert not out.exists()  # a table measured for a refused budget is not left behind
    if "are refused" in str(info.value):
        # Whether this machine's timings support a latency budget is the calibration's call; a
        # refusal must still say why, and the rest of the test needs an accepted calibration.
        assert "held-out error" in str(info.value) and "latency-calibrate" in str(info.value)
        pytest.skip(f"the calibration refused latency budgets on this machine: {info.value}")
    low, high = (int(v) for v in re.search(r"(\d+) to (\d+) microseconds of latency", str(info.value)).groups())
    lines = []
    try:
        plan = prepare(replace(settings, budget=(low + high) / 2), out, cpu, lines.append)
    except BlockswapError as err:  # measured afresh: the calibration's call again
        assert "are refused" in str(err) and "held-out error" in str(err), err
        pytest.skip(f"the calibration refused latency budgets on this machine: {err}")
    assert any("measuring a latency table" in line for line in lines)
    cheapest, dearest = plan.table.achievable("latency")  # measured again: the same order, not the same numbers
    assert cheapest < (low + high) / 2 < dearest
    assert [t.name for t in plan.table.types[0]] == ["T"]  # the kept block, timed too
    claim(plan)
    stored = json.loads((out / "latency-table.json").read_text())
    assert stored["kept"] == ["T"]
    # Budgets went through the setting's calibration, fitted on networks with the kept block.
    fitted = stored["calibration"]["cpu/t1/b1"]["networks"]
    assert len(fitted) == 20 and all(n["genotype"].split()[0] == "T" for n in fitted)
    again = []
    prepare(replace(settings, budget=(low + high) / 2), out, cpu, again.append)
    assert not any("measuring a latency table" in line for line in again)  # reused from the folder
