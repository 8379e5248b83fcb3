"""Data-parallel training over several processes (docs/paper.md s.8: ImageNet students were trained
with batch 256 split across 4 GPUs).

A run is defined independently of the number of processes N: every rank draws the same seeded
global batch and keeps its contiguous share (`loader.part_of`), the loss of each share is
weighted so that the averaged gradient is the global batch's mean gradient, and batch norm uses
the statistics of the global batch, so N processes train the network one process would (to float
rounding). The augmentation is one process's too: in-memory batches are augmented whole, and an
ImageFolder image's random crop and flip are seeded by the epoch and its index alone
(`loader.SeededImages`), whatever the number of ranks and DataLoader workers. Rank 0 alone writes
checkpoints, metrics and history.

Launch with `blockswap train --nproc N` (spawns N local processes; one GPU each on CUDA, gloo on
the CPU) or under `torchrun`, which sets WORLD_SIZE / RANK / LOCAL_RANK (and MASTER_ADDR/PORT).

Batch norm: `torch.nn.SyncBatchNorm` runs on GPUs only (this torch refuses CPU tensors), so on the
CPU `GlobalBatchNorm2d` computes the same global statistics with two differentiable all-reduces
(channel sums and counts, then centred squares); its running variance uses the unbiased global
variance, as batch norm does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ..errors import BlockswapError, os_error_message

# Rank 0 evaluates the validation split alone while the others wait in their next collective; a
# full ImageNet validation pass must fit inside the wait.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """Where this process stands: rank `rank` of `size`, `local_rank` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.rank, self.size)


SINGLE = World()


def world_from_env(env: dict | None = None) -> World | None:
    """The World torchrun describes in the environment, or None outside torchrun."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise BlockswapError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun or unset it")
    try:
        rank, size, local = (int(env[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        values = ", ".join(f"{n}={env[n]!r}" for n in TORCHRUN_VARIABLES)
        raise BlockswapError(f"torchrun variables must be whole numbers, got {values}") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise BlockswapError(f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}")
    return World(rank, size, local)


# Collective backend per device type: NCCL between GPUs, gloo between CPU processes.
BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


def device_type(name: str) -> str:
    """The device type a multi-process run uses for `--device name` (each rank picks its own index)."""
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if kind not in BACKENDS:
        raise BlockswapError(
            f"several processes need --device auto, cuda or cpu (each rank takes GPU LOCAL_RANK), got {name!r}"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise BlockswapError("device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return kind


def rank_device(kind: str, world: World) -> torch.device:
    if kind != "cuda":
        return torch.device(kind)
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise BlockswapError(f"rank {world.rank} needs GPU {world.local_rank} but only {count} GPU(s) are visible")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def init_process_group(world: World, kind: str, init_method: str = "env://") -> None:
    dist.init_process_group(
        BACKENDS[kind], init_method=init_method, rank=world.rank, world_size=world.size, timeout=COLLECTIVE_TIMEOUT
    )


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# --- collectives --------------------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks of a few numbers (float64, so counts stay exact)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_tensors(tensors: dict[str, torch.Tensor], src: int = 0) -> dict[str, torch.Tensor]:
    """Every rank gets rank `src`'s tensors (same names and shapes on every rank)."""
    if is_distributed():
        for name in sorted(tensors):
            dist.broadcast(tensors[name], src=src)
    return tensors


def barrier() -> None:
    if is_distributed():
        dist.barrier()


# --- batch norm over the global batch -----------------------------------------------------------


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch (all ranks), for
    CPU process groups, where torch's SyncBatchNorm does not run. Eval mode is plain BatchNorm2d
    (running statistics, no communication)."""

    def __init__(self, bn: nn.BatchNorm2d, group):
        super().__init__(
            bn.num_features,
            bn.eps,
            bn.momentum,
            bn.affine,
            bn.track_running_stats,
            device=bn.weight.device if bn.affine else None,
        )
        # The very parameter and buffer objects of `bn`: an optimiser built on the model before the
        # conversion keeps updating them.
        if bn.affine:
            self.weight, self.bias = bn.weight, bn.bias
        if bn.track_running_stats:
            self.running_mean, self.running_var = bn.running_mean, bn.running_var
            self.num_batches_tracked = bn.num_batches_tracked
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        per_channel = x.numel() // channels
        local = torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([per_channel])])
        total = _AllReduceSum.apply(local, self.group)
        count = total[-1].detach()
        mean = total[:channels] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply(centred.pow(2).sum(dim=(0, 2, 3)), self.group) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (count / (count - 1).clamp(min=1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y


def _convert_cpu(model: nn.Module) -> nn.Module:
    # Its own process group: these all-reduces then never interleave with DDP's gradient buckets.
    group = dist.new_group()

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d):
            return GlobalBatchNorm2d(module, group)
        for name, child in module.named_children():
            module.add_module(name, convert(child))
        return module

    return convert(model)


# Batch norm over the global batch, per device type.
GLOBAL_BATCHNORM: dict[str, Callable[[nn.Module], nn.Module]] = {
    "cuda": nn.SyncBatchNorm.convert_sync_batchnorm,
    "cpu": _convert_cpu,
}


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with global-batch BN, wrapped in DistributedDataParallel (gradients averaged)."""
    module = GLOBAL_BATCHNORM[device.type](module)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


# --- launching ----------------------------------------------------------------------------------


def _rank_main(index: int, size: int, kind: str, store: str, threads: int, errors, target, args) -> None:
    world = World(index, size, index)
    if threads:
        torch.set_num_threads(threads)
    try:
        init_process_group(world, kind, f"file://{store}")
        try:
            target(world, rank_device(kind, world), *args)
        finally:
            destroy_process_group()
    except BlockswapError as err:
        errors.put(str(err))
        raise SystemExit(2) from None
    except OSError as err:  # a full disk or a folder it cannot write: the parent says it in one line
        errors.put(os_error_message(err))
        raise SystemExit(2) from None


def spawn(nproc: int, kind: str, target: Callable, *args) -> None:
    """Run `target(world, device, *args)` in `nproc` fresh processes (rank = local rank) and wait.
    A BlockswapError in any rank stops all of them and is raised here, as one line."""
    if kind == "cuda" and torch.cuda.device_count() < nproc:
        raise BlockswapError(f"--nproc {nproc} needs {nproc} GPUs but {torch.cuda.device_count()} are visible")
    # CPU ranks share the cores instead of each taking all of them.
    threads = max(1, torch.get_num_threads() // nproc) if kind == "cpu" else 0
    folder = tempfile.mkdtemp(prefix="blockswap-dist-")
    errors = mp.get_context("spawn").SimpleQueue()
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    # torch logs a warning for each sibling it stops after a rank failed; the failure itself is
    # reported below, as one line.
    spawn_log.setLevel(logging.ERROR)
    try:
        mp.spawn(
            _rank_main,
            args=(nproc, kind, str(Path(folder) / "store"), threads, errors, target, args),
            nprocs=nproc,
            join=True,
        )
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
        if not errors.empty():
            raise BlockswapError(errors.get()) from None
        raise RuntimeError(f"a training process failed: {str(err).strip().splitlines()[-1]}") from err
    finally:
        spawn_log.setLevel(level)
        shutil.rmtree(folder, ignore_errors=True)
