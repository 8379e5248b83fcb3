"""Training and distillation: AT loss, learning on digits, kill-and-resume, checkpoint safety."""

import json
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
from blockswap.checkpoint import CHECKPOINT_FORMAT, MODEL_FORMAT, atomic_save, load_model, safe_load, save_model
from blockswap.cli import main
from blockswap.datasets import load_dataset
from blockswap.distillation import attention_map, attention_transfer_loss, distillation_loss
from blockswap.train import TrainConfig, Trainer

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


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("teacher")
    Trainer(config(), out, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    return out


def test_teacher_learns_and_writes_its_outputs(teacher_dir):
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert metrics["test_error"] < CHANCE / 3
    assert metrics["params"] == build_model("wrn-10-2").spec.cost((SIZE, SIZE)).params
    assert metrics["mode"] == "paper" and metrics["seed"] == 0 and metrics["teacher"] is None
    for key in ("code_version", "hyperparameters", "provenance", "test_error_top5", "macs", "ops"):
        assert key in metrics
    history = pd.read_csv(teacher_dir / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "train_error", "lr", "val_error", "seconds"]
    assert history["lr"].iloc[0] == 0.1 and history["lr"].is_monotonic_decreasing  # cosine per epoch
    assert not (teacher_dir / "checkpoint.pt").exists()


def test_distilled_student_learns(tmp_path, digits, teacher_dir):
    cfg = config(genotype=["G(4)", "B(2)", "BG(2,M/4)"], teacher=str(teacher_dir), epochs=6, beta=100.0)
    metrics = Trainer(cfg, tmp_path, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    assert metrics["test_error"] < CHANCE / 2
    assert metrics["genotype"] == ["G(4)", "B(2)", "BG(2,M/4)"] and metrics["teacher"] == str(teacher_dir)


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
    Trainer(config(), teacher_dir, torch.device("cpu"), digits, progress=False, log=logs.append).run()
    assert "nothing to do" in logs[-1] and (teacher_dir / "model.pt").stat().st_mtime_ns == before
    with pytest.raises(BlockswapError, match="finished run of a different configuration"):
        Trainer(config(lr=0.05), teacher_dir, torch.device("cpu"), digits, progress=False).run()


def test_teacher_student_mismatch_is_a_clear_error(tmp_path, digits, teacher_dir):
    cfg = config(arch="resnet-18", teacher=str(teacher_dir), epochs=1)
    with pytest.raises(BlockswapError, match="teacher has 3 attention-transfer points but the student has 4"):
        Trainer(cfg, tmp_path, torch.device("cpu"), digits, progress=False).run()
    other = tmp_path / "t100"
    save_model(build_model("wrn-10-2", num_classes=100), other / "model.pt", (SIZE, SIZE), "cifar100")
    with pytest.raises(BlockswapError, match="has 100 classes but digits has 10"):
        Trainer(config(teacher=str(other)), tmp_path / "s", torch.device("cpu"), digits, progress=False)


def test_reduced_student_distils_from_a_wider_deeper_teacher(tmp_path, digits, teacher_dir):
    cfg = config(arch="wrn-10-1", teacher=str(teacher_dir), epochs=1)
    metrics = Trainer(cfg, tmp_path, torch.device("cpu"), digits, progress=False, log=lambda *_: None).run()
    assert 0 <= metrics["test_error"] <= 100


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


def train_cmd(out, epochs=8):
    return [sys.executable, "-m", "blockswap.cli", "train", "--arch", "wrn-10-2", "--dataset", "digits",
            "--image-size", str(SIZE), "--epochs", str(epochs), "--batch-size", "32", "--seed", "3",
            "--device", "cpu", "--quiet", "--out", str(out)]


def test_killed_training_resumes_to_the_same_numbers(tmp_path):
    subprocess.run(train_cmd(tmp_path / "ref"), check=True, capture_output=True)
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.pt").exists():
        time.sleep(0.01)
    time.sleep(0.4)  # somewhere inside a later epoch
    os.kill(proc.pid, signal.SIGKILL)
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


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--schedule", "linear"], "invalid choice: 'linear'"),
        (["--bf16", "--device", "cpu"], "--bf16 needs a CUDA device"),
        (["--teacher", "nowhere"], "does not exist"),
        (["--genotype", "S S"], "genotype has 2 block types"),
        (["--kd-alpha", "2"], "kd alpha must be between 0 and 1"),
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
    args = make_parser().parse_args(["train", "--arch", "wrn-10-2", "--dataset", "digits", "--out", "o",
                                     "--config", str(tmp_path / "h.yaml"), "--lr", "0.2"])
    cfg = train_config(args)
    assert (cfg.epochs, cfg.lr, cfg.weight_decay) == (7, 0.2, 5e-4)
    args = make_parser().parse_args(["train", "--arch", "resnet-18", "--dataset", "imagenet", "--out", "o",
                                     "--protocol", "imagenet"])
    cfg = train_config(args)
    assert (cfg.epochs, cfg.batch_size, cfg.schedule, cfg.beta, cfg.weight_decay) == (100, 256, "step", 750.0, 1e-4)
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    code = main(["train", "--arch", "wrn-10-2", "--dataset", "digits", "--out", "o", "--config", str(tmp_path / "bad.yaml")])
    assert code == 2 and "unknown keys epochz" in capsys.readouterr().err
