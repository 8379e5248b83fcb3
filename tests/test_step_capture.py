"""The epoch's sums on the device (no host sync in a step) and the pieces of a captured step: held
minibatches, recapture when the learning rate changes, eager calls with other tensors, what
--cuda-graphs refuses. CUDA graphs cannot run here; a stand-in backend that replays by running the
step again on the held tensors checks everything around them on the CPU (tests/test_lockstep.py
trains lockstep jobs with it)."""

import math

import pytest
import torch

from blockswap import BlockswapError
from blockswap.cli import main
from blockswap.training import step_capture
from blockswap.training.config import TrainConfig
from blockswap.training.step_capture import WARMUP_CALLS, Captured, HeldBatch, RerunGraphs, check_capturable
from blockswap.training.tally import StepTally

CPU = torch.device("cpu")


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


@pytest.fixture
def rerun_cpu(monkeypatch):
    monkeypatch.setitem(step_capture.GRAPH_BACKENDS, "cpu", RerunGraphs)


# --- the captured step ----------------------------------------------------------------------------


def test_a_captured_step_replays_only_on_its_own_held_tensors(rerun_cpu):
    lr = [0.1]
    step = Captured(lambda x: (x * 2,), CPU, key=lambda: lr[0])
    held = HeldBatch(batch_size=2)
    outs = []
    for k in range(6):
        x, _, is_held = held.hold(torch.full((2, 1), float(k)), torch.zeros(2))
        outs.append(step(x, held=is_held)[0].clone())
    partial = step(torch.ones(1, 1), held=False)[0]  # another shape: eager, a fresh tensor
    lr[0] = 0.05
    x, _, _ = held.hold(torch.full((2, 1), 9.0), torch.zeros(2))
    after = step(x, held=True)[0]
    assert [o[0, 0].item() for o in outs] == [0, 2, 4, 6, 8, 10]
    assert partial.item() == 2 and after[0, 0].item() == 18
    assert step.captures == 2  # at the 4th held call, and again for the new learning rate


def test_held_batch_keeps_its_tensors_for_full_minibatches_only():
    held = HeldBatch(batch_size=4)
    a, la, ok_a = held.hold(torch.randn(4, 3), torch.arange(4))
    source = torch.randn(4, 3)
    b, lb, ok_b = held.hold(source, torch.arange(4) + 1)
    c, _, ok_c = held.hold(torch.randn(2, 3), torch.arange(2))
    assert ok_a and ok_b and not ok_c
    assert a is b and la is lb and torch.equal(b, source) and torch.equal(lb, torch.arange(4) + 1)
    assert c is not a and a is held.images


# --- what --cuda-graphs needs ----------------------------------------------------------------------


def config(**overrides):
    return TrainConfig(arch="wrn-10-1", dataset="digits", image_size=8, epochs=1, **overrides)


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


def test_a_step_is_not_captured_before_every_momentum_buffer_exists(tmp_path):
    # A capture would record SGD's "create the buffer" branch and reset the buffer at every replay.
    from blockswap.data.loaders import load_dataset
    from blockswap.training.train import Trainer

    data = load_dataset("digits", image_size=8)
    trainer = Trainer(config(), tmp_path / "run", CPU, data, progress=False, log=lambda *_: None)
    with pytest.raises(BlockswapError, match=r"cannot capture the training step: no momentum buffer yet for stem"):
        trainer._check_momentum_buffers()
    trainer.train_epoch(0)  # eager steps create them
    trainer._check_momentum_buffers()


def test_captured_asks_before_each_capture(rerun_cpu):
    asked = []
    step = Captured(lambda x: (x + 1,), CPU, key=lambda: len(asked) // 2, before_capture=lambda: asked.append(1))
    x = torch.zeros(1)
    for _ in range(WARMUP_CALLS + 2):
        step(x, held=True)
    assert asked == [1]  # warm-up calls eager, then one capture, then a replay

    def refuse():
        raise BlockswapError("not yet")

    refused = Captured(lambda x: (x,), CPU, before_capture=refuse)
    for _ in range(WARMUP_CALLS):
        refused(x, held=True)
    with pytest.raises(BlockswapError, match="not yet"):
        refused(x, held=True)


def test_cuda_graphs_with_several_processes_is_refused_before_any_starts(tmp_path, capsys, rerun_cpu):
    # The stand-in makes the CPU a capturing device, so the process count is what is refused.
    out = tmp_path / "run"
    args = "train --arch wrn-10-1 --dataset digits --image-size 8 --epochs 1 --device cpu --cuda-graphs --nproc 2"
    code = main([*args.split(), "--quiet", "--out", str(out)])
    assert code == 2 and capsys.readouterr().err == "blockswap: error: --cuda-graphs needs one process (--nproc 1)\n"
    assert not out.exists()
