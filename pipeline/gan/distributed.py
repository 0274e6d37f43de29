"""Data-parallel GAN training across processes (``torchrun``), on any torch backend.

One global batch of ``synthesis.train.batch_size`` rows is drawn per step from the seeded
streams, the same on every process; each process computes its own slice of it (rank r:
rows r*b to (r+1)*b, b = batch / world size). Gradients are averaged by
``DistributedDataParallel``, and the generator's BatchNorm takes its batch statistics over
the whole global batch (:class:`SyncedBatchNorm2d`, which unlike torch's SyncBatchNorm
also runs on the CPU with gloo). So N processes compute what one process computes on the
same global batch, up to the order of floating-point sums, and a checkpoint (written by
rank 0; every stream is global) resumes at any world size.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place in a distributed run (rank 0 of 1 when there is none)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process measures, writes checkpoints and reports (rank 0)."""
        return self.rank == 0


def current_world() -> World:
    """The world of the initialised process group, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def launched_distributed() -> bool:
    """Whether ``torchrun`` (or another launcher setting WORLD_SIZE) started this process
    as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_type: str) -> World:
    """Join the process group the launcher's environment describes (RANK, WORLD_SIZE,
    MASTER_ADDR/PORT): NCCL for CUDA, gloo otherwise; on CUDA, pin this process's GPU."""
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return current_world()


def shutdown() -> None:
    """Leave the process group (if any) at once."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined(device_type: str) -> Iterator[World]:
    """The process group of :func:`init_from_env` for the ``with`` block, then left.

    On a normal end every process first waits for the others and drops its unreferenced
    DistributedDataParallel wrappers, so none tears its connections down while a peer
    still uses them (gloo aborted the process that left first, now and then). On an error
    it leaves at once: the peers may never reach the barrier."""
    world = init_from_env(device_type)
    try:
        yield world
    except BaseException:
        shutdown()
        raise
    barrier()
    gc.collect()
    shutdown()


def barrier() -> None:
    """Wait for every process (a no-op alone)."""
    if current_world().size > 1:
        dist.barrier()


def mean_across(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the processes (a copy; not differentiable)."""
    world = current_world()
    if world.size == 1:
        return values
    out = values.detach().clone()
    dist.all_reduce(out)
    return out / world.size


def sum_across_(values: torch.Tensor) -> None:
    """Replace ``values`` by their sum over the processes, in place."""
    if current_world().size > 1:
        dist.all_reduce(values)


def my_rows(values: torch.Tensor, world: World, parts: int = 1) -> torch.Tensor:
    """This process's rows of ``values`` drawn for the whole world: ``values`` holds
    ``parts`` parts (e.g. the real and the fake half of D's batch) of ``size x b`` rows
    each; rank r takes rows r*b to (r+1)*b of every part, in part order."""
    if world.size == 1:
        return values
    split = values.view(parts, world.size, -1, *values.shape[1:])
    return split[:, world.rank].reshape(-1, *values.shape[1:])


class _SumAcross(torch.autograd.Function):
    """The sum over the processes, differentiable: the gradient of a sum of every process's
    values is the sum of every process's gradients."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        out = values.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process's rows when ``sync`` is
    set in a distributed run (the mean and variance of the global batch, through a
    differentiable all-reduce of the sums); otherwise plain BatchNorm2d. Running
    statistics are updated as BatchNorm2d updates them, from the global batch."""

    sync = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.sync and self.training and current_world().size > 1):
            return super().forward(x)
        channels = x.shape[1]
        flat = x.float().transpose(0, 1).reshape(channels, -1)
        local = torch.cat([flat.sum(1), (flat * flat).sum(1), flat.new_full((1,), flat.shape[1])])
        total = _SumAcross.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked + 1)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), momentum)
            self.num_batches_tracked += 1
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def sync_batch_norm(module: nn.Module, on: bool = True) -> None:
    """Turn the global-batch statistics of every :class:`SyncedBatchNorm2d` in ``module`` on
    (or off)."""
    for m in module.modules():
        if isinstance(m, SyncedBatchNorm2d):
            m.sync = on
