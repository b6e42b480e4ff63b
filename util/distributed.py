"""Multi-process training with torchrun: process group set-up, rank checks, weight-sync verification.

Started as ``torchrun --nproc_per_node N train.py ...``, every process trains on its own share of each
epoch (DistributedSampler) with its own batch of --batch_size; gradients are averaged by
DistributedDataParallel. Backend: nccl with one GPU per local rank when --gpu_ids names GPUs, gloo on
the CPU (--gpu_ids -1). Only rank 0 prints losses, writes HTML, talks to visdom and saves checkpoints.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

from util.errors import UserError


def launched_by_torchrun() -> bool:
    """Return True when the environment says this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """Return this process's rank: the process group's, before it exists torchrun's RANK, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Return True on rank 0, and in a run that is not distributed."""
    return rank() == 0


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Return values averaged over the torchrun processes (unchanged when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def setup(opt: argparse.Namespace) -> None:
    """Join the process group when started by torchrun; sets opt.distributed, opt.rank, opt.world_size.

    On CUDA each process takes the GPU of its local rank (opt.gpu_ids becomes [local_rank]).
    """
    opt.distributed = launched_by_torchrun()
    opt.rank, opt.world_size = 0, 1
    if not opt.distributed:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if opt.gpu_ids:
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"torchrun started a process for GPU {local_rank} but only "
                            f"{torch.cuda.device_count()} are visible; lower --nproc_per_node")
        opt.gpu_ids = [local_rank]
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    opt.rank, opt.world_size = dist.get_rank(), dist.get_world_size()


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process reaches this point (a no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_value(value: float, device: torch.device) -> float:
    """Return rank 0's value on every rank (value itself when not distributed); every rank waits for rank 0."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def wrap(net: nn.Module, opt: argparse.Namespace, find_unused_parameters: bool = False) -> nn.Module:
    """Return net wrapped in DistributedDataParallel when training with torchrun, else net unchanged."""
    if not getattr(opt, "distributed", False):
        return net
    device_ids = opt.gpu_ids or None
    return nn.parallel.DistributedDataParallel(net, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


def max_weight_difference(nets: list[nn.Module]) -> float:
    """Return the largest |w - w_rank0| over every parameter and buffer of nets, across all ranks (0 if single)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    worst = torch.zeros(())
    for net in nets:
        for tensor in list(net.state_dict().values()):
            reference = tensor.detach().clone()
            dist.broadcast(reference, src=0)
            worst = torch.maximum(worst, (tensor.detach() - reference).abs().max().float().cpu())
    device = next(nets[0].parameters()).device
    worst = worst.to(device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
