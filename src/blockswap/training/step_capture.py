"""A training step captured once as a CUDA graph and replayed, and the students of a lockstep job
on CUDA streams of their own (`cuda_graphs`, CUDA only).

Why: a small network at batch 128 on a GPU is bound by the host, not the device. A WRN-40-2
student's step is about 2,000 kernel launches of a few microseconds of work each, so the GPU waits
for Python. A captured step is one launch; several students' replays on separate streams also let
their small kernels run side by side.

What a replay computes is what the captured Python computed, on the same memory:
- Inputs are held: every full minibatch is copied into the same tensors (`HeldBatch`), and the
  teacher's forward pass is itself captured, so its outputs are the same tensors every step. A call
  with other tensors (the last, partial minibatch of an epoch) runs eagerly.
- Python values the capture freezes are its key: the learning rate, which the schedule changes
  per epoch. A new key (or new input tensors) captures again.
- The first `WARMUP_CALLS` calls of each captured function run eagerly: they create what a capture
  must find in place (the optimiser's momentum buffers, cuDNN and cuBLAS handles) and run the
  first step's checks. They are the run's real steps, not thrown-away ones.
- The step has no host sync (tally.py sums the loss on the device). It is paper mode's float32
  (bf16 autocast would need its cast cache off inside a capture), without torch.compile (which
  makes graphs of its own), in one process (`check_capturable`).

How the graph is made and replayed is a backend of `GRAPH_BACKENDS`, by device type: CUDA's
graphs here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from ..errors import BlockswapError

WARMUP_CALLS = 3


class CudaGraphs:
    """Capture with torch.cuda.graph (which waits for the device first) on the current stream, a
    non-default one (`Streams`), and replay there."""

    @staticmethod
    def capture(fn: Callable, inputs: Sequence):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=torch.cuda.current_stream()):  # where the warm-up ran
            outputs = fn(*inputs)
        return graph, outputs

    @staticmethod
    def replay(graph) -> None:
        graph.replay()


class RerunGraphs:
    """A stand-in for CUDA graphs, to check on a CPU what surrounds a capture (held inputs, the key,
    eager partial batches, static outputs): the capture runs `fn` once and its first replay does
    nothing; each later replay runs `fn` again on the captured input tensors and copies its outputs
    into the captured ones, as a graph writes the same memory. Never registered by default: the
    tests and bench/gpu.sh's CPU dry run put it under "cpu" in GRAPH_BACKENDS."""

    captures = 0

    class Graph:
        def __init__(self, fn: Callable, inputs: Sequence, outputs):
            self.fn, self.inputs, self.outputs, self.fresh = fn, inputs, outputs, True

    @classmethod
    def capture(cls, fn: Callable, inputs: Sequence):
        cls.captures += 1
        outputs = fn(*inputs)
        return cls.Graph(fn, inputs, outputs), outputs

    @staticmethod
    def replay(graph) -> None:
        if graph.fresh:  # the capture ran it
            graph.fresh = False
            return
        for mine, new in zip(leaves(graph.outputs), leaves(graph.fn(*graph.inputs))):
            if mine is not None:
                mine.copy_(new)


GRAPH_BACKENDS = {"cuda": CudaGraphs}


def check_capturable(config, device: torch.device, processes: int) -> None:
    """One line naming why `cuda_graphs` cannot be used with this run, if it cannot."""
    if not config.cuda_graphs:
        return
    reasons = [
        (device.type not in GRAPH_BACKENDS, f"a CUDA device (this run is on {device.type})"),
        (config.bf16, "no --bf16 (captured steps are paper mode's float32)"),
        (config.compile, "no --compile (torch.compile makes its own graphs)"),
        (processes > 1, "one process (--nproc 1)"),
    ]
    for broken, need in reasons:
        if broken:
            raise BlockswapError(f"--cuda-graphs needs {need}")


def leaves(tree) -> list:
    """The tensors (and Nones) of nested tuples and lists, in order: what a capture holds on to."""
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def same_tensors(a: Sequence, b: Sequence) -> bool:
    la, lb = leaves(list(a)), leaves(list(b))
    return len(la) == len(lb) and all(x is y for x, y in zip(la, lb))


class Eager:
    """`fn(*inputs)`, run as it is: the step when nothing is captured."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *inputs, held: bool):
        return self.fn(*inputs)


def stepper(fn: Callable, device: torch.device, capture: bool, key=lambda: None, before_capture=lambda: None):
    """`fn` captured (`Captured`) when `capture`, else run eagerly (`Eager`); called alike."""
    return Captured(fn, device, key, before_capture) if capture else Eager(fn)


class Captured:
    """`fn(*inputs)` replayed from a graph while its inputs are held tensors (`held=True`), the same
    ones it was captured with, and `key()` is unchanged; otherwise run eagerly or captured again."""

    def __init__(
        self,
        fn: Callable,
        device: torch.device,
        key: Callable[[], object] = lambda: None,
        before_capture: Callable[[], None] = lambda: None,
    ):
        """`key()`: the Python values `fn` freezes; `before_capture()` raises if `fn` cannot be captured yet."""
        self.fn, self.key, self.before_capture = fn, key, before_capture
        self.backend = GRAPH_BACKENDS[device.type]
        self.calls = self.captures = 0
        self.graph = self.inputs = self.outputs = self.captured_key = None

    def __call__(self, *inputs, held: bool):
        self.calls += 1
        if not held or self.calls <= WARMUP_CALLS:
            return self.fn(*inputs)
        key = self.key()
        if self.graph is None or key != self.captured_key or not same_tensors(inputs, self.inputs):
            self.before_capture()
            self.graph = self.outputs = None  # the old graph's memory goes back before the new capture
            self.graph, self.outputs = self.backend.capture(self.fn, inputs)
            self.inputs, self.captured_key = inputs, key
            self.captures += 1
        self.backend.replay(self.graph)  # a capture records the step without running it
        return self.outputs


class HeldBatch:
    """Full minibatches copied into the same two tensors, so that captured steps can read them."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.images = self.labels = None

    def hold(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(images, labels, held): the held tensors with this minibatch in them, or the minibatch
        itself (held False) when it is not a full one."""
        if len(labels) != self.batch_size:
            return images, labels, False
        if self.images is None or self.images.shape != images.shape or self.images.stride() != images.stride():
            self.images, self.labels = images.clone(), labels.clone()
        else:
            self.images.copy_(images)
            self.labels.copy_(labels)
        return self.images, self.labels, True


class Streams:
    """The streams of one lockstep job on a GPU with captured steps: the job's own stream, which
    draws the minibatches and runs the teacher, and one per student, each waiting for the minibatch
    and the teacher's outputs on the job's stream, which waits for all of them before the next
    minibatch overwrites the held tensors. Nothing runs on the default stream, on which CUDA cannot
    capture; each function is captured on the stream its eager warm-up ran on (cuBLAS prepares its
    workspace per stream, and must not do so inside a capture). Off the GPU, or without captured
    steps, everything runs in order on the current stream."""

    def __init__(self, device: torch.device, count: int, enabled: bool):
        on = enabled and device.type == "cuda"
        self.job = torch.cuda.Stream(device) if on else None
        self.streams = [torch.cuda.Stream(device) for _ in range(count)] if on else []

    @contextlib.contextmanager
    def pass_on_job_stream(self):
        """An epoch's pass on the job's stream, ordered after and before the caller's stream."""
        if self.job is None:
            yield
            return
        caller = torch.cuda.current_stream(self.job.device)
        self.job.wait_stream(caller)  # the epoch's tallies and learning rates were set there
        try:
            with torch.cuda.stream(self.job):
                yield
        finally:
            caller.wait_stream(self.job)  # evaluation and checkpoints read the trained weights

    def on(self, i: int):
        """Student `i`'s step on its own stream, after what the job's stream has queued."""
        if not self.streams:
            return contextlib.nullcontext()
        stream = self.streams[i]
        stream.wait_stream(torch.cuda.current_stream(stream.device))
        return torch.cuda.stream(stream)

    def join(self) -> None:
        for stream in self.streams:
            torch.cuda.current_stream(stream.device).wait_stream(stream)
