"""Integrity guards of training: a diverging run stops at once with one line and leaves
nothing finished; non-finite hyperparameters, incompatible teachers and damaged result files are
one line each, never a traceback and never a run taken for finished."""

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys

import pytest
import torch

from blockswap import BlockswapError, build_model
from blockswap.cli import main, make_parser
from blockswap.cli.training import train_config
from blockswap.data.loaders import load_dataset
from blockswap.data.splits import ImageTensors
from blockswap.training.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    atomic_save,
    safe_load,
    save_model,
)
from blockswap.training.config import TrainConfig
from blockswap.training.train import Trainer

SIZE = 8
CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
# Files a run writes; none of them may be left by a run that stopped with an error.
OUTPUTS = ("metrics.json", "model.pt", "history.csv", "checkpoint.pt")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=SIZE)


def subset(data, n):
    """`data` with only its first `n` training images (fast training runs)."""
    return dataclasses.replace(data, train=ImageTensors(data.train.images[:n], data.train.labels[:n]))


def config(**overrides):
    base = dict(arch="wrn-10-1", dataset="digits", image_size=SIZE, epochs=1, batch_size=32, seed=0)
    return TrainConfig(**{**base, **overrides})


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


def left_behind(out):
    return [name for name in OUTPUTS if (out / name).exists()]


# --- hyperparameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("lr", math.inf, "lr must be a finite number, got inf"),
        ("lr", math.nan, "lr must be a finite number, got nan"),
        ("lr", "0.1", "lr must be a finite number, got '0.1'"),
        ("lr", True, "lr must be a finite number, got True"),
        ("weight_decay", math.inf, "weight decay must be a finite number, got inf"),
        ("lr", 1e39, "lr must be within float32's range (at most 3.403e+38), got 1e+39"),
        ("weight_decay", -1e39, "weight decay must be within float32's range (at most 3.403e+38), got -1e+39"),
        ("momentum", math.nan, "momentum must be a finite number, got nan"),
        ("momentum", -0.5, "momentum must be at least 0 and below 1, got -0.5"),
        ("momentum", 1.0, "momentum must be at least 0 and below 1, got 1.0"),
        ("gamma", math.inf, "gamma must be a finite number, got inf"),
        ("beta", math.inf, "beta must be a finite number, got inf"),
        ("kd_alpha", math.nan, "kd alpha must be a finite number, got nan"),
        ("kd_temperature", math.inf, "kd temperature must be a finite number, got inf"),
        ("epochs", "3", "epochs must be a whole number, got '3'"),
        ("batch_size", 32.0, "batch size must be a whole number, got 32.0"),
    ],
)
def test_non_finite_or_mistyped_hyperparameters_are_refused(field, value, message):
    with pytest.raises(BlockswapError) as err:
        config(**{field: value})
    assert one_line(str(err.value)) == message


TRAIN = ["train", "--arch", "wrn-10-1", "--dataset", "digits", "--image-size", str(SIZE), "--quiet", "--device", "cpu"]


def test_an_infinite_lr_from_a_flag_or_a_config_file_is_one_line(tmp_path, capsys):
    (tmp_path / "h.yaml").write_text("lr: .inf\n")
    for extra in (["--lr", "inf"], ["--config", str(tmp_path / "h.yaml")]):
        code = main([*TRAIN, "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err == "blockswap: error: lr must be a finite number, got inf\n", err
        assert not (tmp_path / "o").exists()


# --- divergence ---------------------------------------------------------------------------------

DIVERGED = r"^training diverged: {what} at epoch {epoch}, step {step} of {steps} \(lr {lr}\); lower the learning rate"


@pytest.mark.slow
def test_a_diverging_run_stops_at_the_step_and_marks_nothing_finished(tmp_path, digits):
    # lr 1e30: the first step's update makes the weights ~1e30, so the second step's logits
    # overflow: the loss is no longer finite at step 2 of epoch 1 (4 steps of 32 per epoch).
    out = tmp_path / "run"
    with pytest.raises(BlockswapError) as err:
        Trainer(config(lr=1e30, epochs=3), out, CPU, subset(digits, 128), **QUIET).run()
    pattern = DIVERGED.format(what="loss is (nan|inf)", epoch=1, step=2, steps=4, lr=r"1e\+30")
    assert re.match(pattern, one_line(str(err.value))), err.value
    assert not out.exists()  # nothing written: no checkpoint, no metrics, not even the folder


@pytest.mark.slow
def test_divergence_keeps_the_last_good_checkpoint_and_a_rerun_stops_again(tmp_path, digits):
    # Step schedule x1e30 at epoch 2: epoch 1 trains normally (its checkpoint is written), epoch 2
    # diverges. Rerunning resumes from epoch 1's checkpoint and stops at the same step again.
    cfg = config(lr=0.05, epochs=3, schedule="step", milestones=[1], gamma=1e30)
    out, data = tmp_path / "run", subset(digits, 96)
    messages = []
    for attempt in range(2):
        logs = []
        with pytest.raises(BlockswapError) as err:
            Trainer(cfg, out, CPU, data, progress=False, log=logs.append).run()
        messages.append(one_line(str(err.value)))
        state = safe_load(out / "checkpoint.pt", CHECKPOINT_FORMAT)
        assert state["epoch"] == 1 and len(state["history"]) == 1
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
        assert left_behind(out) == ["checkpoint.pt"]
        if attempt == 0:
            checkpoint = (out / "checkpoint.pt").read_bytes()
        else:
            assert logs[0].startswith("resuming") and (out / "checkpoint.pt").read_bytes() == checkpoint
    assert re.match(DIVERGED.format(what="loss is (nan|inf)", epoch=2, step=2, steps=3, lr=r"5e\+28"), messages[0])
    assert messages[1] == messages[0]


def test_weights_made_non_finite_by_an_epochs_last_step_are_never_saved(tmp_path, digits):
    # The update of an epoch's last step comes after its loss, which was finite: whatever makes
    # the weights non-finite there (here an overflow planted in the optimiser's step), they must
    # not reach the checkpoint. Epoch 1 (3 steps) is clean; epoch 2's third step overflows.
    out = tmp_path / "run"
    trainer = Trainer(config(epochs=3), out, CPU, subset(digits, 96), **QUIET)
    steps = []

    def overflow(optimiser, args, kwargs):
        steps.append(None)
        if len(steps) == 6:
            with torch.no_grad():
                trainer.model.classifier[2].bias[0] = math.inf

    trainer.optimiser.register_step_post_hook(overflow)
    with pytest.raises(BlockswapError) as err:
        trainer.run()
    pattern = DIVERGED.format(what="the weights became non-finite", epoch=2, step=3, steps=3, lr=r"0\.075")
    assert re.match(pattern, one_line(str(err.value))), err.value
    state = safe_load(out / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert state["epoch"] == 1 and torch.isfinite(state["model"]["classifier.2.bias"]).all()
    assert left_behind(out) == ["checkpoint.pt"]


def test_a_network_whose_test_outputs_are_not_finite_is_not_marked_finished(tmp_path, digits):
    # One step in all at lr 1e30: loss and weights stay finite (~1e30), but the test pass
    # overflows; the run must not be recorded as finished with chance-level error.
    out = tmp_path / "run"
    with pytest.raises(BlockswapError) as err:
        Trainer(config(lr=1e30), out, CPU, subset(digits, 32), **QUIET).run()
    assert re.match(
        r"^training diverged: the network's outputs on the test set are not finite after epoch 1 "
        r"\(lr 1e\+30\); lower the learning rate",
        one_line(str(err.value)),
    ), err.value
    assert left_behind(out) == ["checkpoint.pt"]  # the run never finished: no model, metrics or history


@pytest.mark.slow
def test_a_diverging_data_parallel_run_stops_every_rank_with_one_line(tmp_path):
    # The real command in a subprocess: its whole stderr (that of both ranks included) is the one line.
    out = tmp_path / "o"
    argv = [
        *TRAIN,
        "--arch",
        "wrn-10-1",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "1e30",
        "--nproc",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run([sys.executable, "-m", "blockswap.cli", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    pattern = DIVERGED.format(what="loss is (nan|inf)", epoch=1, step=2, steps=34, lr=r"1e\+30")
    assert proc.stderr.count("\n") == 1 and re.match(pattern, proc.stderr.removeprefix("blockswap: error: ")), (
        proc.stderr
    )
    assert not out.exists()


# --- teachers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset,size,message",
    [
        ("svhn", SIZE, "was trained on svhn at 8x8 px but the student trains on digits at 8x8 px"),
        ("digits", 16, "was trained on digits at 16x16 px but the student trains on digits at 8x8 px"),
        ("cifar10", 32, "was trained on cifar10 at 32x32 px but the student trains on digits at 8x8 px"),
    ],
)
def test_a_teacher_of_another_dataset_or_input_size_is_refused(tmp_path, digits, dataset, size, message):
    teacher = tmp_path / "teacher"
    save_model(build_model("wrn-10-1", seed=1), teacher / "model.pt", (size, size), dataset)  # 10 classes
    with pytest.raises(BlockswapError) as err:
        Trainer(config(teacher=str(teacher)), tmp_path / "s", CPU, digits, **QUIET)
    assert (
        one_line(str(err.value)) == f"teacher {teacher} {message}; distil from a teacher trained on the "
        "student's dataset and image size"
    )


def test_a_teacher_with_non_finite_weights_or_no_data_record_is_refused(tmp_path, digits):
    teacher = tmp_path / "teacher"
    net = build_model("wrn-10-1", seed=1)
    with torch.no_grad():
        net.classifier[2].weight[0, 0] = math.nan
    save_model(net, teacher / "model.pt", (SIZE, SIZE), "digits")
    with pytest.raises(BlockswapError) as err:
        Trainer(config(teacher=str(teacher)), tmp_path / "s", CPU, digits, **QUIET)
    assert (
        one_line(str(err.value)) == f"teacher {teacher} has non-finite weights (classifier.2.weight); "
        "it diverged: train it again with a lower learning rate"
    )
    record = safe_load(teacher / "model.pt", MODEL_FORMAT)
    record["state_dict"] = build_model("wrn-10-1", seed=1).state_dict()
    del record["dataset"]  # hand-made or foreign file
    atomic_save(record, teacher / "model.pt")
    (teacher / "model.pt.provenance.json").unlink()  # no seal: a file made by hand
    with pytest.raises(BlockswapError) as err:
        Trainer(config(teacher=str(teacher)), tmp_path / "s", CPU, digits, **QUIET)
    assert (
        one_line(str(err.value)) == f"teacher {teacher} does not record the dataset it was trained on; "
        "use a model.pt written by blockswap train"
    )


def test_evaluating_a_network_with_non_finite_weights_is_one_line(tmp_path, capsys):
    net = build_model("wrn-10-1", seed=1)
    with torch.no_grad():
        net.classifier[2].bias[0] = math.nan
    save_model(net, tmp_path / "model.pt", (SIZE, SIZE), "digits")
    code = main(["evaluate", str(tmp_path), "--device", "cpu", "--out", str(tmp_path / "eval.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "gives non-finite outputs for 360 test images" in err, err
    assert not (tmp_path / "eval.json").exists()


# --- damaged result files -----------------------------------------------------------------------

FINISHED = [*TRAIN, "--epochs", "1", "--batch-size", "32", "--seed", "4"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits):
    """A finished run of exactly the configuration `FINISHED` describes (trained on 64 images: the
    data are no part of the fingerprint)."""
    out = tmp_path_factory.mktemp("finished")
    cfg = train_config(make_parser().parse_args([*FINISHED, "--out", str(out)]))
    Trainer(cfg, out, CPU, subset(digits, 64), **QUIET).run()
    return out


def nan_weights(path):
    record = safe_load(path, MODEL_FORMAT)
    record["state_dict"]["classifier.2.bias"][3] = math.nan
    atomic_save(record, path)


def rewrite_model(path, **fields):
    record = safe_load(path, MODEL_FORMAT)
    record.update(fields)
    atomic_save(record, path)


def rewrite_metrics(path, change):
    metrics = json.loads(path.read_text())
    change(metrics)
    path.write_text(json.dumps(metrics))


DAMAGE = {
    "metrics truncated": ("metrics.json", lambda p: p.write_bytes(p.read_bytes()[:100]), "not valid JSON"),
    "metrics binary": ("metrics.json", lambda p: p.write_bytes(b"\x80\x81PK\x03\x04"), "not UTF-8 text"),
    "metrics a list": ("metrics.json", lambda p: p.write_text("[1, 2]"), "a JSON list, not an object"),
    "metrics test error a string": (
        "metrics.json",
        lambda p: rewrite_metrics(p, lambda m: m.update(test_error="3")),
        "test_error is '3', not a percentage",
    ),
    "metrics test error nan": (
        "metrics.json",
        lambda p: rewrite_metrics(p, lambda m: m.update(test_error=math.nan)),
        "test_error is nan, not a percentage",
    ),
    "metrics without test error": (
        "metrics.json",
        lambda p: rewrite_metrics(p, lambda m: m.pop("test_error")),
        "test_error is None, not a percentage",
    ),
    "metrics without fingerprint": (
        "metrics.json",
        lambda p: rewrite_metrics(p, lambda m: m.pop("fingerprint")),
        "no configuration fingerprint",
    ),
    "model truncated": ("model.pt", lambda p: p.write_bytes(p.read_bytes()[:3000]), "is corrupt or truncated"),
    "model not ours": ("model.pt", lambda p: p.write_text("{}"), "is not a blockswap-model/1 file"),
    "model missing": ("model.pt", lambda p: p.unlink(), "is missing"),
    "model with nan weights": ("model.pt", nan_weights, "holds non-finite weights (classifier.2.bias)"),
    "model masks a list": ("model.pt", lambda p: rewrite_model(p, masks=[1]), "holds a malformed model record"),
    "model classes a string": (
        "model.pt",
        lambda p: rewrite_model(p, num_classes="ten"),
        "holds a malformed model record",
    ),
    "model weights of another network": (
        "model.pt",
        lambda p: rewrite_model(p, arch="wrn-10-2"),
        "weights do not fit wrn-10-2 (Missing key(s) in state_dict: ",
    ),
}


@pytest.mark.parametrize("nproc", ["1", "2"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_finished_run_is_one_line_and_not_taken_for_finished(tmp_path, capsys, finished, damage, nproc):
    name, spoil, reason = DAMAGE[damage]
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    spoil(out / name)
    # Without its sidecar (as a hand-made file would be), the damaged file's contents are checked;
    # with it, the digest check names the change first (test below).
    (out / f"{name}.provenance.json").unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main([*FINISHED, "--nproc", nproc, "--out", str(out)])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and err.count("\n") == 1 and reason in err, err
    assert "nothing to do" not in captured.out
    if name == "metrics.json":
        assert f"{out / name} is damaged (" in err and f"delete it, or the folder {out}, to train the run again" in err
    else:
        assert f"delete the folder {out} (or its model.pt and metrics.json) to train the run again" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched, nothing trained


@pytest.mark.parametrize("name", ["model.pt", "metrics.json"])
def test_a_finished_run_changed_after_it_was_written_is_named(tmp_path, capsys, finished, name):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    with open(out / name, "ab") as fh:
        fh.write(b" ")
    code = main([*FINISHED, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{out / name} changed after it was written" in err, err


def test_deleting_the_damaged_metrics_trains_the_run_again(tmp_path, finished, digits):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "metrics.json").write_text("{")
    cfg = train_config(make_parser().parse_args([*FINISHED, "--out", str(out)]))
    with pytest.raises(BlockswapError, match="metrics.json changed after it was written"):
        Trainer(cfg, out, CPU, subset(digits, 64), **QUIET).run()
    (out / "metrics.json").unlink()  # as the message says
    metrics = Trainer(cfg, out, CPU, subset(digits, 64), **QUIET).run()
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["test_error"] == json.loads((finished / "metrics.json").read_text())["test_error"]


def test_a_damaged_checkpoint_is_one_line_saying_what_to_do(tmp_path, digits):
    cfg, data = config(epochs=2), subset(digits, 32)
    trainer = Trainer(cfg, tmp_path, CPU, data, **QUIET)
    state = trainer._checkpoint(1, [], 0.0)
    del state["optimiser"]
    atomic_save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(BlockswapError) as err:
        Trainer(cfg, tmp_path, CPU, data, **QUIET).run()
    assert one_line(str(err.value)) == (
        f"{tmp_path / 'checkpoint.pt'} is damaged (no 'optimiser'); delete it to train the run from the start"
    )
    state = trainer._checkpoint(1, [], 0.0)
    state["model"] = build_model("wrn-10-2").state_dict()  # weights of another network
    atomic_save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(BlockswapError) as err:
        Trainer(cfg, tmp_path, CPU, data, **QUIET).run()
    assert re.match(
        rf"^{re.escape(str(tmp_path / 'checkpoint.pt'))} is damaged \(.*\); delete it to train the run "
        "from the start$",
        one_line(str(err.value)),
    ), err.value
    truncated = (tmp_path / "checkpoint.pt").read_bytes()[:3000]
    (tmp_path / "checkpoint.pt").write_bytes(truncated)
    with pytest.raises(BlockswapError) as err:
        Trainer(cfg, tmp_path, CPU, data, **QUIET).run()
    assert one_line(str(err.value)).endswith("delete it to train the run from the start")
    assert (tmp_path / "checkpoint.pt").read_bytes() == truncated and left_behind(tmp_path) == ["checkpoint.pt"]
