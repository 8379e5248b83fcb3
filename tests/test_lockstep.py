"""Lockstep training: several students in one job equal each trained alone, resume each on their own,
and every student of one seed sees the same minibatches (common random numbers); no step waits for
the device, and captured steps (--cuda-graphs, replayed here by a CPU stand-in) give the same runs."""

import dataclasses
import hashlib
import json
import math

import pandas as pd
import pytest
import torch

from blockswap import BlockswapError
from blockswap.cli import main
from blockswap.data.loaders import load_dataset
from blockswap.data.splits import ImageTensors
from blockswap.training import step_capture
from blockswap.training.config import TrainConfig
from blockswap.training.runs import convergence
from blockswap.training.step_capture import WARMUP_CALLS, RerunGraphs
from blockswap.training.train import Trainer, train_together

SIZE = 8
CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
GENOTYPES = [["G(2)", "B(2)", "S"], ["BG(2,M/2)", "S", "G(4)"], ["S", "G(N)", "B(2)"]]


@pytest.fixture(scope="module")
def data():
    digits = load_dataset("digits", image_size=SIZE)
    # 100 training images: three full minibatches of 32 and a partial one of 4 per epoch.
    return dataclasses.replace(digits, train=ImageTensors(digits.train.images[:100], digits.train.labels[:100]))


def config(**overrides):
    base = dict(arch="wrn-10-1", dataset="digits", image_size=SIZE, epochs=3, batch_size=32, seed=0)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("teacher")
    Trainer(config(epochs=2), out, CPU, data, **QUIET).run()
    return str(out)


def students(teacher, **overrides):
    """Three different students of one seed (one with its own learning rate)."""
    lrs = [0.1, 0.05, 0.1]
    return [config(genotype=g, teacher=teacher, lr=lr, **overrides) for g, lr in zip(GENOTYPES, lrs)]


def weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def assert_same_run(a, b):
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (a, b))
    assert ma["test_error"] == mb["test_error"] and ma["fingerprint"] == mb["fingerprint"]
    wa, wb = weights(a), weights(b)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-6, atol=1e-7, msg=name)
    ha, hb = (pd.read_csv(f / "history.csv") for f in (a, b))
    pd.testing.assert_series_equal(ha["train_loss"], hb["train_loss"], rtol=1e-6)


@pytest.fixture(scope="module")
def alone(tmp_path_factory, data, teacher):
    """Each student trained by itself, the reference."""
    root = tmp_path_factory.mktemp("alone")
    for i, cfg in enumerate(students(teacher)):
        Trainer(cfg, root / str(i), CPU, data, **QUIET).run()
    return root


def test_students_trained_in_lockstep_equal_each_trained_alone(tmp_path, data, teacher, alone):
    runs = [Trainer(cfg, tmp_path / str(i), CPU, data, **QUIET) for i, cfg in enumerate(students(teacher))]
    metrics = train_together(runs)
    assert [m["lockstep"] for m in metrics] == [3, 3, 3]
    for i in range(3):
        assert_same_run(tmp_path / str(i), alone / str(i))


def test_the_teacher_runs_once_per_minibatch_for_all_students(tmp_path, data, teacher, monkeypatch):
    runs = [Trainer(cfg, tmp_path / str(i), CPU, data, **QUIET) for i, cfg in enumerate(students(teacher))]
    calls = []
    forward = runs[0].teacher.forward_intermediates
    monkeypatch.setattr(runs[0].teacher, "forward_intermediates", lambda x: calls.append(1) or forward(x))
    train_together(runs)
    assert len(calls) == 3 * 4  # 3 epochs of 4 minibatches, not 3 students x 12


def test_each_student_resumes_on_its_own(tmp_path, data, teacher, alone):
    cfgs = students(teacher)

    class Stop(Exception):
        pass

    def stop_after_epoch_1(line):
        if "epoch 1/" in line:
            raise Stop

    # Student 0 finished, student 1 stopped after its first epoch, student 2 never started.
    Trainer(cfgs[0], tmp_path / "0", CPU, data, **QUIET).run()
    with pytest.raises(Stop):
        Trainer(cfgs[1], tmp_path / "1", CPU, data, progress=False, log=stop_after_epoch_1).run()
    assert (tmp_path / "1" / "checkpoint.pt").is_file() and not (tmp_path / "1" / "metrics.json").exists()
    logs = []
    runs = [Trainer(cfg, tmp_path / str(i), CPU, data, progress=False, log=logs.append) for i, cfg in enumerate(cfgs)]
    train_together(runs)
    assert any("already trained" in line for line in logs) and any("resuming" in line for line in logs)
    for i in range(3):
        assert_same_run(tmp_path / str(i), alone / str(i))


def test_students_of_one_seed_see_the_same_minibatches(tmp_path, data, teacher, monkeypatch):
    seen = {}
    step = Trainer.train_step

    def record(self, epoch, i, steps, images, labels, *rest):
        digest = hashlib.sha256(images.contiguous().numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
        seen.setdefault(str(self.out), []).append(digest)
        return step(self, epoch, i, steps, images, labels, *rest)

    monkeypatch.setattr(Trainer, "train_step", record)
    cfgs = students(teacher)
    # Trained alone, in separate runs: the same data order and augmentation per seed ...
    for i, cfg in enumerate(cfgs[:2]):
        Trainer(cfg, tmp_path / f"alone-{i}", CPU, data, **QUIET).run()
    # ... and another seed sees other minibatches.
    Trainer(dataclasses.replace(cfgs[0], seed=1), tmp_path / "seed-1", CPU, data, **QUIET).run()
    first, second, other = (seen[str(tmp_path / name)] for name in ("alone-0", "alone-1", "seed-1"))
    assert len(first) == 12 and first == second
    assert all(a != b for a, b in zip(first, other))


def test_students_that_cannot_share_minibatches_are_refused(tmp_path, data, teacher):
    cfgs = students(teacher)
    for change in (dict(seed=1), dict(batch_size=16), dict(epochs=2), dict(cutout=False)):
        runs = [Trainer(cfgs[0], tmp_path / "a", CPU, data, **QUIET)]
        runs.append(Trainer(dataclasses.replace(cfgs[1], **change), tmp_path / "b", CPU, data, **QUIET))
        with pytest.raises(BlockswapError, match=f"share their minibatches.*{next(iter(change))}"):
            train_together(runs)
    same = [Trainer(cfgs[0], tmp_path / "a", CPU, data, **QUIET), Trainer(cfgs[1], tmp_path / "a", CPU, data, **QUIET)]
    with pytest.raises(BlockswapError, match="same folder"):
        train_together(same)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_convergence_numbers_are_recorded(alone):
    metrics = json.loads((alone / "0" / "metrics.json").read_text())
    history = pd.read_csv(alone / "0" / "history.csv")
    assert metrics["final_train_loss"] == pytest.approx(history["train_loss"].iloc[-1])
    # 3 epochs: the last fifth rounds to one epoch, so the change is epoch 3's minus epoch 2's.
    assert metrics["convergence_window"] == 1
    assert metrics["val_error_change"] == pytest.approx(history["val_error"].iloc[-1] - history["val_error"].iloc[-2])


def test_convergence_window_is_the_last_fifth_of_the_epochs():
    history = [{"train_loss": 1.0 / (e + 1), "val_error": 50.0 - e} for e in range(20)]
    result = convergence(history)
    assert result == {"final_train_loss": 1.0 / 20, "val_error_change": -4.0, "convergence_window": 4}
    assert convergence([{"train_loss": 0.5, "val_error": 3.0}])["val_error_change"] is None
    assert convergence([{"train_loss": 0.5}, {"train_loss": 0.4}])["val_error_change"] is None


def test_cli_trains_several_students_in_lockstep(tmp_path, teacher, capsys):
    outs = [str(tmp_path / n) for n in ("a", "b")]
    common = ["train", "--arch", "wrn-10-1", "--dataset", "digits", "--image-size", "8", "--epochs", "1"]
    common += ["--batch-size", "256", "--teacher", teacher, "--quiet", "--tag", "method=random"]
    main([*common, "--genotype", "G(2)", "S", "--out", *outs, "--each-tag", "network=net-a,net-b"])
    main([*common, "--genotype", "S", "--out", str(tmp_path / "solo"), "--tag", "network=net-b"])
    records = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b", "solo")]
    assert [r["tags"]["network"] for r in records] == ["net-a", "net-b", "net-b"]
    assert all(r["tags"]["method"] == "random" for r in records)
    assert [r["genotype"][0] for r in records] == ["G(2)", "S", "S"]
    assert [r["lockstep"] for r in records] == [2, 2, 1]
    assert records[1]["test_error"] == records[2]["test_error"]
    assert_same_run(tmp_path / "b", tmp_path / "solo")
    assert main([*common, "--genotype", "S", "S", "S", "--out", *outs]) == 2
    assert "3 --genotype values for 2 --out folders" in capsys.readouterr().err
    assert main([*common, "--out", *outs, "--each-tag", "network=only-one"]) == 2
    assert "1 values for 2 students" in capsys.readouterr().err
    assert main([*common, "--out", *outs, "--nproc", "2"]) == 2
    assert "lockstep in one process" in capsys.readouterr().err


def test_a_second_trainer_of_a_folder_in_use_stops_with_one_line(tmp_path, data, teacher):
    from blockswap.locks import run_lock

    out = tmp_path / "run"
    with run_lock(out):  # another process's trainer (flock: a second open file is refused alike)
        with pytest.raises(BlockswapError, match=f"another process is training into {out}"):
            Trainer(students(teacher)[0], out, CPU, data, **QUIET).run()
        runs = [Trainer(cfg, tmp_path / str(i), CPU, data, **QUIET) for i, cfg in enumerate(students(teacher))]
        runs[1].out = out
        with pytest.raises(BlockswapError, match="another process is training into"):
            train_together(runs)
    assert not out.exists() and not any(p.name.endswith(".lock") for p in tmp_path.iterdir())
    Trainer(students(teacher)[0], out, CPU, data, **QUIET).run()  # free again: trains
    assert (out / "metrics.json").is_file() and not (tmp_path / ".run.lock").exists()


# --- on a GPU's terms: no host sync in a step, and captured steps (CUDA graphs) ---


def test_a_training_step_never_waits_for_the_device(tmp_path, data, teacher, monkeypatch):
    # Every way a tensor's value reaches the host raises inside a step: the per-step loss read
    # (and any other sync) would make the host wait for a GPU between steps and students.
    inside = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _original=original, _name=name, **kwargs):
            if inside:
                raise AssertionError(f"Tensor.{_name} inside a training step")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    step, steps = Trainer.train_step, []

    def watched(self, *args):
        inside.append(1)
        try:
            return step(self, *args)
        finally:
            inside.pop()
            steps.append(1)

    monkeypatch.setattr(Trainer, "train_step", watched)
    runs = [Trainer(cfg, tmp_path / str(i), CPU, data, **QUIET) for i, cfg in enumerate(students(teacher))]
    metrics = train_together(runs)
    assert len(steps) == 3 * 3 * 4 and all(math.isfinite(m["test_error"]) for m in metrics)
    inside.append(1)  # the guard itself: a read inside a step does raise
    with pytest.raises(AssertionError, match="Tensor.__float__ inside a training step"):
        float(torch.ones(()))
    inside.clear()


@pytest.fixture
def rerun_graphs(monkeypatch):
    RerunGraphs.captures = 0
    monkeypatch.setitem(step_capture.GRAPH_BACKENDS, "cpu", RerunGraphs)
    return RerunGraphs


def same_runs(a, b):
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (a, b))
    assert ma["test_error"] == mb["test_error"]
    ha, hb = (pd.read_csv(f / "history.csv") for f in (a, b))
    pd.testing.assert_series_equal(ha["train_loss"], hb["train_loss"], check_exact=True)
    wa, wb = (torch.load(f / "model.pt", weights_only=True)["state_dict"] for f in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_captured_lockstep_steps_equal_eager_ones_and_capture_once_per_learning_rate(
    tmp_path, data, teacher, alone, rerun_graphs
):
    cfgs = students(teacher, cuda_graphs=True)
    train_together([Trainer(cfg, tmp_path / str(i), CPU, data, **QUIET) for i, cfg in enumerate(cfgs)])
    for i in range(len(GENOTYPES)):
        same_runs(tmp_path / str(i), alone / str(i))
    # 3 epochs of 3 full minibatches (held) and a partial one (eager). The teacher is captured
    # once (its inputs never change); each student once per learning rate (cosine: one per epoch)
    # after its WARMUP_CALLS eager steps, here at the first step of epoch 2.
    assert WARMUP_CALLS == 3
    assert rerun_graphs.captures == 1 + 3 * 2
