"""The training step without host syncs (the epoch's sums stay on the device) and the captured step:
held minibatches, a captured teacher, recapture when the learning rate changes, eager partial
batches. CUDA graphs cannot run here; a stand-in backend that replays by running the step again on
the held tensors checks everything around them on the CPU."""

import dataclasses
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
from blockswap.training.step_capture import WARMUP_CALLS, Captured, HeldBatch, RerunGraphs, check_capturable
from blockswap.training.tally import StepTally
from blockswap.training.train import Trainer, train_together

SIZE = 8
CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
GENOTYPES = [["G(2)", "B(2)", "S"], ["BG(2,M/2)", "S", "G(4)"]]


# --- the epoch's sums on the device ---------------------------------------------------------------


def test_device_sums_are_the_hosts_float64_arithmetic_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    tally = StepTally(CPU)
    host_loss, host_wrong, seen = 0.0, 0, 0
    for step in range(50):
        n = int(torch.randint(1, 129, (), generator=g))
        loss = torch.rand((), generator=g, dtype=torch.float32) * 3
        logits, labels = torch.randn(n, 10, generator=g), torch.randint(0, 10, (n,), generator=g)
        tally.add(step, loss, logits, labels)
        host_loss += float(loss) * n
        host_wrong += int((logits.argmax(1) != labels).sum())
        seen += n
    sums = tally.read()
    assert sums.loss_sum == host_loss and sums.wrong == host_wrong and tally.seen == seen
    assert sums.first_bad_step is None and sums.first_bad_loss is None


def test_the_first_non_finite_step_and_its_loss_are_kept():
    tally = StepTally(CPU)
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    for step, value in enumerate([1.0, 2.0, math.inf, math.nan, 1.0]):
        tally.add(step, torch.tensor(value), logits, labels)
    sums = tally.read()
    assert sums.first_bad_step == 2 and sums.first_bad_loss == math.inf
    tally.add(5, torch.tensor(1.0), logits, labels[:0])  # an empty share adds nothing
    assert tally.read().first_bad_step == 2 and tally.seen == 10


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
    Trainer(config(epochs=1), out, CPU, data, **QUIET).run()
    return str(out)


def students(teacher, **overrides):
    return [config(genotype=g, teacher=teacher, **overrides) for g in GENOTYPES]


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
    assert len(steps) == 2 * 3 * 4 and all(math.isfinite(m["test_error"]) for m in metrics)
    inside.append(1)  # the guard itself: a read inside a step does raise
    with pytest.raises(AssertionError, match="Tensor.__float__ inside a training step"):
        float(torch.ones(()))
    inside.clear()


# --- the captured step ----------------------------------------------------------------------------


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
    tmp_path, data, teacher, rerun_graphs
):
    eager = [Trainer(cfg, tmp_path / "eager" / str(i), CPU, data, **QUIET) for i, cfg in enumerate(students(teacher))]
    train_together(eager)
    graphed = [
        Trainer(cfg, tmp_path / "graphs" / str(i), CPU, data, **QUIET)
        for i, cfg in enumerate(students(teacher, cuda_graphs=True))
    ]
    train_together(graphed)
    for i in range(len(GENOTYPES)):
        same_runs(tmp_path / "eager" / str(i), tmp_path / "graphs" / str(i))
    # 3 epochs of 3 full minibatches (held) and a partial one (eager). The teacher is captured
    # once (its inputs never change); each student once per learning rate (cosine: one per epoch)
    # after its WARMUP_CALLS eager steps, here at the first step of epoch 2.
    assert WARMUP_CALLS == 3
    assert rerun_graphs.captures == 1 + 2 * 2


def test_a_captured_step_replays_only_on_its_own_held_tensors():
    calls = []

    def fn(x):
        calls.append(1)
        return (x * 2,)

    RerunGraphs.captures = 0
    step_capture.GRAPH_BACKENDS["cpu"] = RerunGraphs
    try:
        lr = [0.1]
        step = Captured(fn, CPU, key=lambda: lr[0])
        held = HeldBatch(batch_size=2)
        outs = []
        for k in range(6):
            x, _, is_held = held.hold(torch.full((2, 1), float(k)), torch.zeros(2))
            outs.append(step(x, held=is_held)[0].clone())
        partial = step(torch.ones(1, 1), held=False)[0]  # another shape: eager, a fresh tensor
        lr[0] = 0.05
        x, _, _ = held.hold(torch.full((2, 1), 9.0), torch.zeros(2))
        after = step(x, held=True)[0]
    finally:
        del step_capture.GRAPH_BACKENDS["cpu"]
    assert [o[0, 0].item() for o in outs] == [0, 2, 4, 6, 8, 10]
    assert partial.item() == 2 and after[0, 0].item() == 18
    assert RerunGraphs.captures == 2  # at the 4th held call, and again for the new learning rate


def test_held_batch_keeps_its_tensors_for_full_minibatches_only():
    held = HeldBatch(batch_size=4)
    a, la, ok_a = held.hold(torch.randn(4, 3), torch.arange(4))
    source = torch.randn(4, 3)
    b, lb, ok_b = held.hold(source, torch.arange(4) + 1)
    c, _, ok_c = held.hold(torch.randn(2, 3), torch.arange(2))
    assert ok_a and ok_b and not ok_c
    assert a is b and la is lb and torch.equal(b, source) and torch.equal(lb, torch.arange(4) + 1)
    assert c is not a and a is held.images


# --- what --cuda-graphs needs ---------------------------------------------------------------------

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    "changes, device, processes, needs",
    [
        ({}, CPU, 1, r"a CUDA device \(this run is on cpu\)"),
        ({"bf16": True}, CUDA, 1, "no --bf16"),
        ({"compile": True}, CUDA, 1, "no --compile"),
        ({}, CUDA, 2, r"one process \(--nproc 1\)"),
    ],
)
def test_what_cuda_graphs_cannot_run_with_is_one_line(changes, device, processes, needs):
    with pytest.raises(BlockswapError, match=rf"^--cuda-graphs needs {needs}"):
        check_capturable(config(cuda_graphs=True, **changes), device, processes)
    check_capturable(config(**changes), device, processes)  # without graphs: nothing to refuse


def test_cuda_graphs_on_the_cpu_is_refused_by_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = "train --arch wrn-10-1 --dataset digits --image-size 8 --epochs 1 --device cpu --cuda-graphs --quiet"
    code = main([*args.split(), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err == "blockswap: error: --cuda-graphs needs a CUDA device (this run is on cpu)\n", err
    assert not out.exists()


def test_cuda_graphs_joins_the_fingerprint_only_when_on():
    assert config().fingerprint() == config(cuda_graphs=False).fingerprint()
    assert config(cuda_graphs=True).fingerprint() != config().fingerprint()
