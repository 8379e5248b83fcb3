"""Training and distillation: AT loss, learning on digits, kill-and-resume, checkpoint safety."""

import dataclasses
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from blockswap import BlockswapError, build_model
from blockswap.cli import main
from blockswap.data.loader import evaluation_batches
from blockswap.data.loaders import load_dataset
from blockswap.data.splits import ImageTensors
from blockswap.training.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    atomic_save,
    load_model,
    safe_load,
    save_model,
)
from blockswap.training.config import TrainConfig
from blockswap.training.distillation import (
    attention_map,
    attention_transfer_loss,
    default_beta,
    distillation_loss,
)
from blockswap.training.train import Trainer

SIZE = 8
CHANCE = 90.0  # % error of guessing among 10 classes


def test_attention_map_and_loss_by_hand():
    # One example, two channels, 1x2 pixels: mean_c(x^2) = [(1+9)/2, (4+0)/2] = [5, 2].
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    norm = (25 + 4) ** 0.5
    torch.testing.assert_close(attention_map(x), torch.tensor([[5 / norm, 2 / norm]]))
    y = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # map [1, 0]
    expected = ((5 / norm - 1) ** 2 + (2 / norm) ** 2) / 2
    assert attention_transfer_loss(x, y).item() == pytest.approx(expected)
    assert attention_transfer_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-12)  # scale-free


def test_total_loss_is_ce_plus_beta_times_the_sum_over_points():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    s = [torch.randn(4, 3, 4, 4), torch.randn(4, 5, 2, 2)]
    t = [torch.randn(4, 6, 4, 4), torch.randn(4, 2, 2, 2)]
    total = distillation_loss(logits, labels, s, logits, t, beta=1000.0)
    at = attention_transfer_loss(s[0], t[0]) + attention_transfer_loss(s[1], t[1])
    expected = torch.nn.functional.cross_entropy(logits, labels) + 1000.0 * at
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=SIZE)


def config(**overrides):
    base = dict(arch="wrn-10-2", dataset="digits", image_size=SIZE, epochs=5, batch_size=32, seed=0)
    return TrainConfig(**{**base, **overrides})


QUICK_TEACHER = dict(epochs=1)  # a finished run to read back, rebuild and refuse; learning is learned_teacher's


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("teacher")
    Trainer(config(**QUICK_TEACHER), out, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    return out


@pytest.fixture(scope="module")
def learned_teacher(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("learned-teacher")
    Trainer(config(), out, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    return out


@pytest.mark.slow
def test_teacher_learns_and_writes_its_outputs(learned_teacher):
    teacher_dir = learned_teacher
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert metrics["test_error"] < CHANCE / 3
    assert metrics["params"] == build_model("wrn-10-2").spec.cost((SIZE, SIZE)).params
    assert metrics["mode"] == "paper" and metrics["seed"] == 0 and metrics["teacher"] is None
    for key in ("code_version", "hyperparameters", "provenance", "test_error_top5", "macs", "ops"):
        assert key in metrics
    assert metrics["params_dense"] == metrics["params"] and metrics["prune"] is None and metrics["beta"] is None
    history = pd.read_csv(teacher_dir / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "train_error", "lr", "val_error", "seconds"]
    assert history["lr"].iloc[0] == 0.1 and history["lr"].is_monotonic_decreasing  # cosine per epoch
    # Exactly the closed-form cosine of each epoch, so strictly lower every epoch (not a step shape).
    assert history["lr"].tolist() == [0.1 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)]
    assert (history["lr"].diff().dropna() < 0).all()
    assert not (teacher_dir / "checkpoint.pt").exists()


@pytest.mark.slow
def test_distilled_student_learns(tmp_path, digits, learned_teacher):
    teacher_dir = learned_teacher
    cfg = config(genotype=["G(4)", "B(2)", "BG(2,M/4)"], teacher=str(teacher_dir), epochs=6, beta=100.0)
    metrics = Trainer(cfg, tmp_path, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    assert metrics["test_error"] < CHANCE / 2
    assert metrics["genotype"] == ["G(4)", "B(2)", "BG(2,M/4)"] and metrics["teacher"] == str(teacher_dir)
    assert metrics["beta"] == 100.0  # an explicit beta is used as given
    assert metrics["teacher_source"]["kind"] == "trained" and metrics["teacher_source"]["arch"] == "wrn-10-2"


def test_model_file_rebuilds_the_same_network(teacher_dir, digits):
    model, record = load_model(teacher_dir)
    assert record["arch"] == "wrn-10-2" and record["input_size"] == [SIZE, SIZE]
    x = (digits.test.images[:16].float() / 255 - 0.3) / 0.3
    again, _ = load_model(teacher_dir / "model.pt")
    torch.testing.assert_close(model.eval()(x), again.eval()(x))


def test_evaluate_recomputes_the_test_error(teacher_dir, capsys):
    assert main(["evaluate", str(teacher_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert result["test_error"] == pytest.approx(metrics["test_error"])


def test_finished_run_is_not_retrained_and_foreign_config_refused(teacher_dir, digits):
    logs = []
    before = (teacher_dir / "model.pt").stat().st_mtime_ns
    Trainer(config(**QUICK_TEACHER), teacher_dir, torch.device("cpu"), digits, progress=False, log=logs.append).run()
    assert "nothing to do" in logs[-1] and (teacher_dir / "model.pt").stat().st_mtime_ns == before
    with pytest.raises(BlockswapError, match="finished run of a different configuration"):
        Trainer(config(**QUICK_TEACHER, lr=0.05), teacher_dir, torch.device("cpu"), digits, progress=False).run()


def test_teacher_student_mismatch_is_a_clear_error(tmp_path, digits, teacher_dir):
    cfg = config(arch="resnet-18", teacher=str(teacher_dir), epochs=1)
    with pytest.raises(BlockswapError, match="teacher has 3 attention-transfer points but the student has 4"):
        Trainer(cfg, tmp_path, torch.device("cpu"), digits, progress=False).run()
    other = tmp_path / "t100"
    save_model(build_model("wrn-10-2", num_classes=100), other / "model.pt", (SIZE, SIZE), "cifar100")
    with pytest.raises(BlockswapError, match="has 100 classes but digits has 10"):
        Trainer(config(teacher=str(other)), tmp_path / "s", torch.device("cpu"), digits, progress=False)
    # Same classes, other data: the teacher's record names what it was trained on.
    with pytest.raises(
        BlockswapError,
        match=r"was trained on digits at 8x8 px but the student trains on digits at "
        r"16x16 px",
    ):
        Trainer(
            config(teacher=str(teacher_dir), image_size=16),
            tmp_path / "s16",
            torch.device("cpu"),
            load_dataset("digits", image_size=16),
            progress=False,
        )


def attention_distances(student, teacher, images) -> list[float]:
    """AT loss between two networks at each of their stage outputs (eval mode)."""
    with torch.no_grad():
        s = student.eval().forward_intermediates(images).stages
        t = teacher.eval().forward_intermediates(images).stages
    return [attention_transfer_loss(a, b).item() for a, b in zip(s, t)]


@pytest.mark.slow
def test_reduced_student_distils_from_a_wider_deeper_teacher(tmp_path, digits):
    quiet = dict(progress=False, log=lambda *_: None)
    deep = tmp_path / "teacher"  # WRN-16-2: twice the depth and width of the WRN-10-1 student
    Trainer(config(arch="wrn-16-2", epochs=4), deep, torch.device("cpu"), digits, **quiet).run()
    cfg = config(arch="wrn-10-1", teacher=str(deep), epochs=3)
    metrics = Trainer(cfg, tmp_path / "distilled", torch.device("cpu"), digits, **quiet).run()
    assert 0 <= metrics["test_error"] <= 100
    assert metrics["beta"] == 62.5  # automatic: 1000 x (8 / 32)^2
    alone = Trainer(config(arch="wrn-10-1", epochs=3), tmp_path / "alone", torch.device("cpu"), digits, **quiet).run()
    images = next(iter(evaluation_batches(digits, "test", 256)))[0]
    teacher, student, control = (load_model(tmp_path / name)[0] for name in ("teacher", "distilled", "alone"))
    assert teacher.spec.arch.depth == 6 and student.spec.arch.depth == 3
    # Attention transfer acted at every stage: each of the student's three attention maps is far
    # closer to the deeper teacher's than those of the same student trained without it.
    distilled, undistilled = (
        attention_distances(student, teacher, images),
        attention_distances(control, teacher, images),
    )
    assert len(distilled) == 3
    assert all(d < 0.5 * u for d, u in zip(distilled, undistilled)), (distilled, undistilled)
    assert metrics["test_error"] < CHANCE / 2 and alone["test_error"] < CHANCE / 2


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# torch warns about the pickle protocol of the hand-made malicious file before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_corrupt_and_foreign_files_are_refused(tmp_path, teacher_dir):
    evil = tmp_path / "evil.pt"
    torch.save({"format": MODEL_FORMAT, "payload": Payload()}, evil)
    with pytest.raises(BlockswapError, match="refused: it carries Python objects"):
        load_model(evil)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((teacher_dir / "model.pt").read_bytes()[:2000])
    with pytest.raises(BlockswapError, match="corrupt or truncated"):
        load_model(truncated)
    plain_pickle = tmp_path / "plain.pt"
    plain_pickle.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BlockswapError, match="not a blockswap-model/1 file .not a zip archive"):
        load_model(plain_pickle)
    with pytest.raises(BlockswapError, match="not a blockswap-model/1 file .not a zip archive"):
        load_model(teacher_dir / "metrics.json")
    with pytest.raises(BlockswapError, match="is not a blockswap-checkpoint/1 file"):
        safe_load(teacher_dir / "model.pt", CHECKPOINT_FORMAT)
    with pytest.raises(BlockswapError, match="does not exist"):
        load_model(tmp_path / "missing")


def test_checkpoint_of_another_configuration_is_refused(tmp_path, digits):
    trainer = Trainer(config(epochs=3), tmp_path, torch.device("cpu"), digits, progress=False, log=lambda *_: None)
    atomic_save(trainer._checkpoint(1, [], 0.0), tmp_path / "checkpoint.pt")
    with pytest.raises(BlockswapError, match="belongs to a different configuration"):
        Trainer(config(epochs=4), tmp_path, torch.device("cpu"), digits, progress=False).run()


def train_cmd(out, epochs=4):  # epoch 1 checkpointed, a kill in a later epoch, the rest resumed
    return [
        sys.executable,
        "-m",
        "blockswap.cli",
        "train",
        "--arch",
        "wrn-10-2",
        "--dataset",
        "digits",
        "--image-size",
        str(SIZE),
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]


# `blockswap train`, stopping for ten minutes before the third step of its second epoch (after
# epoch 1's checkpoint, with two steps of epoch 2 taken in memory), once it has touched $STALLED.
STALLED_TRAIN = """
import os, pathlib, sys, time
from blockswap.training.train import Trainer
real = Trainer.train_step
def train_step(self, epoch, step, *rest):
    if (epoch, step) == (1, 2):
        pathlib.Path(os.environ["STALLED"]).touch()
        time.sleep(600)
    return real(self, epoch, step, *rest)
Trainer.train_step = train_step
from blockswap.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_numbers(tmp_path):
    subprocess.run(train_cmd(tmp_path / "ref"), check=True, capture_output=True)
    out, stalled = tmp_path / "run", tmp_path / "stalled"
    command = [sys.executable, "-c", STALLED_TRAIN, *train_cmd(out)[3:]]  # in place of -m blockswap.cli
    proc = subprocess.Popen(command, env={**os.environ, "STALLED": str(stalled)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not stalled.exists() and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None and stalled.exists(), "the run ended before its second epoch"
    os.kill(proc.pid, signal.SIGKILL)  # inside epoch 2, two steps after epoch 1's checkpoint
    proc.wait()
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
    resumed = subprocess.run(train_cmd(out), check=True, capture_output=True, text=True)
    assert "resuming" in resumed.stdout
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    run = json.loads((out / "metrics.json").read_text())
    assert run["test_error"] == ref["test_error"] and run["test_error_top5"] == ref["test_error_top5"]
    a, _ = load_model(tmp_path / "ref")
    b, _ = load_model(out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    ref_hist = pd.read_csv(tmp_path / "ref" / "history.csv").drop(columns="seconds")
    run_hist = pd.read_csv(out / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ref_hist, run_hist)


SHORT = ["--epochs", "1", "--image-size", str(SIZE), "--device", "cpu"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--schedule", "linear"], "invalid choice: 'linear'"),
        (["--bf16", "--device", "cpu"], "--bf16 needs a CUDA device"),
        (["--teacher", "nowhere"], "does not exist"),
        (["--genotype", "S S"], "genotype has 2 block types"),
        (["--kd-alpha", "2"], "kd alpha must be between 0 and 1"),
        (["--schedule", "step", "--milestones", "60,50"], "milestones must be strictly increasing positive"),
        (["--milestones", "0,5"], "milestones must be strictly increasing positive"),
        (["--milestones", "6x"], "argument --milestones: expected whole epochs separated by commas"),
        (["--gamma", "0"], "gamma must be positive"),
        (["--prune", "snip"], "--prune and --prune-params go together"),
        (["--prune-params", "1000"], "--prune and --prune-params go together"),
        (["--prune", "magnitude", "--prune-params", "9"], "invalid choice: 'magnitude'"),
        (["--prune", "snip", "--prune-params", "99999999"], "exceeds the"),
        (["--nproc", "0"], "--nproc must be at least 1"),
        # One short epoch each: without the check these would train (to nan) rather than stop.
        (["--lr", "inf", *SHORT], "lr must be a finite number, got inf"),
        (["--weight-decay", "nan", *SHORT], "weight decay must be a finite number, got nan"),
        (["--beta", "inf", *SHORT], "beta must be a finite number, got inf"),
        (["--momentum", "1", *SHORT], "momentum must be at least 0 and below 1, got 1.0"),
        (["--momentum", "-0.9", *SHORT], "momentum must be at least 0 and below 1, got -0.9"),
        (["--nproc", "2", "--device", "mps"], "several processes need --device auto, cuda or cpu"),
        (["--teacher", "torchvision:resnet34:/nowhere/w.pth"], "resnet34-b627a593.pth"),
        (["--teacher", "torchvision:vgg11"], "unknown torchvision teacher 'vgg11'"),
    ],
)
def test_train_cli_errors(tmp_path, capsys, argv, message):
    code = main(["train", "--arch", "wrn-10-2", "--dataset", "digits", "--out", str(tmp_path / "o"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_hyperparameters_from_a_config_file_and_flags(tmp_path, capsys):
    from blockswap.cli import make_parser
    from blockswap.cli.training import train_config

    (tmp_path / "h.yaml").write_text("epochs: 7\nlr: 0.05\n")
    args = make_parser().parse_args(
        [
            "train",
            "--arch",
            "wrn-10-2",
            "--dataset",
            "digits",
            "--out",
            "o",
            "--config",
            str(tmp_path / "h.yaml"),
            "--lr",
            "0.2",
        ]
    )
    cfg = train_config(args)
    assert (cfg.epochs, cfg.lr, cfg.weight_decay) == (7, 0.2, 5e-4)
    args = make_parser().parse_args(
        ["train", "--arch", "resnet-18", "--dataset", "imagenet", "--out", "o", "--protocol", "imagenet"]
    )
    cfg = train_config(args)
    assert (cfg.epochs, cfg.batch_size, cfg.schedule, cfg.weight_decay) == (100, 256, "step", 1e-4)
    assert (cfg.milestones, cfg.gamma, cfg.protocol, cfg.cutout, cfg.drop_last) == (
        [30, 60, 90],
        0.1,
        "imagenet",
        False,
        False,
    )
    assert cfg.beta is None and default_beta(cfg.protocol, 224) == 750.0  # the paper's ImageNet beta at 224 px
    (tmp_path / "i.yaml").write_text("protocol: imagenet\ncutout: true\n")  # the file may pick the preset
    args = make_parser().parse_args(
        [
            "train",
            "--arch",
            "resnet-18",
            "--dataset",
            "imagenet",
            "--out",
            "o",
            "--config",
            str(tmp_path / "i.yaml"),
            "--milestones",
            "2,4",
            "--gamma",
            "0.5",
            "--drop-last",
            "--teacher",
            "torchvision:resnet34",
        ]
    )
    cfg = train_config(args)
    assert (cfg.epochs, cfg.milestones, cfg.gamma, cfg.cutout, cfg.drop_last) == (100, [2, 4], 0.5, True, True)
    assert cfg.teacher == "torchvision:resnet34"  # a spec, not resolved as a path
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    code = main(
        ["train", "--arch", "wrn-10-2", "--dataset", "digits", "--out", "o", "--config", str(tmp_path / "bad.yaml")]
    )
    assert code == 2 and "unknown keys epochz" in capsys.readouterr().err


def test_default_beta_scales_the_papers_value_with_the_map_area():
    assert default_beta("cifar", 32) == 1000.0 and default_beta("imagenet", 224) == 750.0
    assert default_beta("cifar", 8) == 62.5 and default_beta("cifar", 16) == 250.0
    with pytest.raises(BlockswapError, match="unknown protocol 'coco'"):
        default_beta("coco", 32)


def subset(data, n):
    """`data` with only its first `n` training images (fast training runs)."""
    return dataclasses.replace(data, train=ImageTensors(data.train.images[:n], data.train.labels[:n]))


def test_automatic_beta_is_recorded_for_a_16_px_student(tmp_path):
    data16 = subset(load_dataset("digits", image_size=16), 64)
    teacher = tmp_path / "teacher16"  # a teacher of the student's image size (an untrained one will do)
    save_model(build_model("wrn-10-2", seed=2), teacher / "model.pt", (16, 16), "digits")
    cfg = config(arch="wrn-10-1", image_size=16, teacher=str(teacher), epochs=1)
    metrics = Trainer(cfg, tmp_path, torch.device("cpu"), data16, progress=False, log=lambda *_: None).run()
    assert metrics["beta"] == 250.0 and metrics["hyperparameters"]["beta"] is None


def test_step_schedule_multiplies_by_gamma_at_the_milestones(tmp_path, digits):
    cfg = config(arch="wrn-10-1", epochs=5, schedule="step", milestones=[1, 3], gamma=0.2)
    Trainer(cfg, tmp_path, torch.device("cpu"), subset(digits, 32), progress=False, log=lambda *_: None).run()
    lr = pd.read_csv(tmp_path / "history.csv")["lr"].tolist()
    assert lr == pytest.approx([0.1, 0.02, 0.02, 0.004, 0.004], rel=1e-12)
    assert lr != pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)], rel=1e-3)


@pytest.mark.parametrize("drop_last,batches", [(False, [32, 32, 32, 4]), (True, [32, 32, 32])])
def test_images_seen_per_epoch_include_the_last_partial_batch(tmp_path, digits, drop_last, batches):
    trainer = Trainer(
        config(arch="wrn-10-1", epochs=2, drop_last=drop_last),
        tmp_path,
        torch.device("cpu"),
        subset(digits, 100),
        progress=False,
        log=lambda *_: None,
    )
    seen = []  # training minibatch sizes entering the network (evaluation passes are in eval mode)
    trainer.model.stem.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])) if m.training else None)
    trainer.run()
    assert seen == batches * 2


class StopAfterFirstEpoch(Exception):
    pass


def stop_after_first_epoch(line):
    if line.startswith("epoch 1/"):  # logged once the epoch's checkpoint is written
        raise StopAfterFirstEpoch


def test_snip_pruned_student_keeps_its_masks_through_training_and_resume(tmp_path, digits):
    data = subset(digits, 64)
    keep = 20000  # of WRN-10-1's 78,042
    cfg = config(arch="wrn-10-1", epochs=3, prune="snip", prune_params=keep)
    ref = Trainer(cfg, tmp_path / "ref", torch.device("cpu"), data, progress=False, log=lambda *_: None).run()
    assert ref["params"] == keep and ref["params_dense"] == build_model("wrn-10-1").spec.cost((SIZE, SIZE)).params
    record = safe_load(tmp_path / "ref" / "model.pt", MODEL_FORMAT)  # the weights as trained, nothing re-applied
    masks, params = record["masks"], record["state_dict"]
    model_params = dict(build_model("wrn-10-1").named_parameters())
    # Convolution weights only: the classifier stays dense.
    assert set(masks) == {n for n, p in model_params.items() if p.dim() == 4}
    for name, mask in masks.items():
        assert torch.all(params[name][mask == 0] == 0), name  # pruned weights stay exactly 0
        assert params[name][mask == 1].count_nonzero() > 0.9 * mask.sum()  # the kept ones trained
    assert sum(int(m.numel() - m.sum()) for m in masks.values()) == ref["params_dense"] - keep

    # Killed after epoch 1: the checkpoint carries the masks; resuming uses them (here: one more
    # weight pruned by hand in the checkpoint, which the resumed run must keep at 0).
    out = tmp_path / "run"
    with pytest.raises(StopAfterFirstEpoch):
        Trainer(cfg, out, torch.device("cpu"), data, progress=False, log=stop_after_first_epoch).run()
    state = safe_load(out / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert all(torch.equal(state["masks"][n], masks[n]) for n in masks)
    name = next(n for n in masks if masks[n].any())
    kept = state["masks"][name].flatten().nonzero()[0, 0]
    state["masks"][name].view(-1)[kept] = 0
    atomic_save(state, out / "checkpoint.pt")
    metrics = Trainer(cfg, out, torch.device("cpu"), data, progress=False, log=lambda *_: None).run()
    record = safe_load(out / "model.pt", MODEL_FORMAT)
    assert metrics["params"] == keep - 1 and torch.equal(record["masks"][name], state["masks"][name])
    assert record["state_dict"][name].view(-1)[kept] == 0
    assert all(torch.all(record["state_dict"][n][m == 0] == 0) for n, m in record["masks"].items())
    # Evaluation sees the pruned network: the model file rebuilds with the masks.
    assert torch.equal(load_model(out)[1]["masks"][name], record["masks"][name])


@pytest.mark.slow
def test_pretrained_torchvision_teacher(tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pth"  # a torchvision ResNet-18 state dict (random, seeded weights)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    spec = f"torchvision:resnet18:{weights}"
    g = torch.Generator().manual_seed(0)
    images = ImageTensors(
        torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 1000, (8,), generator=g)
    )
    digits32 = load_dataset("digits", image_size=32)
    imagenet_like = dataclasses.replace(
        digits32, name="imagenet", num_classes=1000, train=images, test=images, val=None
    )
    cfg = TrainConfig(arch="resnet-18", dataset="imagenet", protocol="imagenet", epochs=1, batch_size=8, teacher=spec)
    metrics = Trainer(
        cfg, tmp_path / "s", torch.device("cpu"), imagenet_like, progress=False, log=lambda *_: None
    ).run()
    assert metrics["teacher"] == spec and metrics["teacher_source"]["kind"] == "pretrained"
    assert metrics["teacher_source"]["weights_file"] == str(weights.resolve())
    assert metrics["beta"] == pytest.approx(750 * (32 / 224) ** 2)
    with pytest.raises(BlockswapError, match="has 1000 classes but the dataset has 10"):
        Trainer(dataclasses.replace(cfg, dataset="digits"), tmp_path / "d", torch.device("cpu"), digits32)
