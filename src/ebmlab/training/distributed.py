"""Data-parallel helpers: one process per device, started by ``torchrun``.

``torchrun --nproc_per_node N -m ebmlab train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (gloo on the
CPU, NCCL on CUDA). Without them everything here is a no-op, so the same
training code runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder's shared files (config, metrics, model checkpoints)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer; got {value!r}") from None


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Join the process group that ``torchrun`` describes, or return a one-process context.

    On CUDA each process uses ``cuda:LOCAL_RANK`` and the NCCL backend; on the
    CPU the gloo backend. Calling it again in an initialised process reuses the group.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext(device=device)
    import torch.distributed as dist

    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = device.startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but CUDA is not available on this machine")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun, else ``model`` itself.

    DDP broadcasts rank 0's parameters at construction and averages the
    gradients over ranks in ``backward``.
    """
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [context.local_rank] if context.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: call on all)."""
    if not context.enabled:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average scalar metrics over ranks (a collective; the keys must match on every rank)."""
    if not context.enabled or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    tensor = tensor.to(context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op in one process)."""
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    """Leave the process group (no-op in one process)."""
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# ----- data parallelism for the layered models' own loops (no DDP wrapper needed) ------------
RANK_SEED_STRIDE = 1_000_003  # keeps the ranks' sampling streams apart


def shard(index: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """This rank's rows of a global minibatch (every ``world_size``-th, from ``rank``).

    Every rank draws the same global minibatch from the shared generator; with
    equal shares, the mean over ranks of the share means is the global mean.
    """
    if not context.enabled:
        return index
    return index[context.rank :: context.world_size]


def average_gradients(module: nn.Module, context: DistributedContext) -> None:
    """Replace every parameter gradient by its mean over ranks (a collective: call on all)."""
    if not context.enabled:
        return
    import torch.distributed as dist

    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= context.world_size


def average_tensor(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (a collective: call on all); ``tensor`` itself in one process."""
    if not context.enabled:
        return tensor
    import torch.distributed as dist

    total = tensor.clone()
    dist.all_reduce(total)
    return total.div_(context.world_size)


def rank_generator(generator: torch.Generator, context: DistributedContext) -> torch.Generator:
    """The generator of this rank's sampling (Gibbs chains, binarisation).

    In one process it is ``generator`` itself, so a run without torchrun draws
    exactly what it always drew. Under torchrun each rank gets its own stream,
    seeded from one draw of the shared ``generator`` (the same on every rank) and
    the rank, while ``generator`` keeps the minibatch order identical everywhere.
    """
    if not context.enabled:
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator)) + context.rank * RANK_SEED_STRIDE
    return torch.Generator(device=generator.device).manual_seed(seed)
