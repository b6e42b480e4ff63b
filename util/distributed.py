"""Multi-process training with torchrun: process group set-up, rank checks, weight-sync verification.

Started as ``torchrun --nproc_per_node N train.py ...``, every process trains on its own share of each
epoch (DistributedSampler) with its own batch of --batch_size; gradients are averaged by
DistributedDataParallel. Backend: nccl with one GPU per local rank when --gpu_ids names GPUs, gloo on
the CPU (--gpu_ids -1). Only rank 0 prints losses, writes HTML, talks to visdom and saves checkpoints.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from util.errors import UserError

# How long a rank waits in a collective for the others. Rank 0 validates alone while the others wait for its
# result (Validator.run), and NCCL's default of 10 minutes is shorter than a validation of a large set.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


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


def local_rank() -> int:
    """Return torchrun's LOCAL_RANK (this process's index on its machine), 0 when not started by torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched_by_torchrun() else 0


def local_world_size() -> int:
    """Return how many torchrun processes run on this machine (LOCAL_WORLD_SIZE), 1 when not started by torchrun."""
    if not launched_by_torchrun():
        return 1
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def rank_gpu(gpu_ids: list[int], local: int, local_size: int, visible: int) -> int:
    """Return the GPU of the torchrun process with local rank `local` of `local_size` on a machine showing `visible`.

    --gpu_ids naming one GPU per local process gives each its own (--gpu_ids 2,3: GPUs 2 and 3); otherwise the
    local ranks take the visible GPUs in turn, which is also right when a launcher shows each process only
    its own GPU (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per process: every one sees a GPU 0).
    """
    return gpu_ids[local] if len(gpu_ids) >= local_size else local % visible


def first_device(gpu_ids: list[int]) -> int:
    """Return the GPU this process selects first: under torchrun its local rank's (rank_gpu), else gpu_ids[0].

    Under torchrun every process would otherwise select gpu_ids[0] before setup() moves it to its own
    GPU, leaving a CUDA context per process on GPU 0.
    """
    if not launched_by_torchrun():
        return gpu_ids[0]
    return rank_gpu(gpu_ids, local_rank(), local_world_size(), torch.cuda.device_count())


def select_gpu(gpu_ids: list[int]) -> None:
    """Make this process's first GPU (first_device) the current one; under torchrun each rank says which it is."""
    device = first_device(gpu_ids)
    torch.cuda.set_device(device)
    if launched_by_torchrun():
        print(f"rank {rank()} of {os.environ.get('WORLD_SIZE')} (local rank {local_rank()}): cuda:{device} "
              f"({torch.cuda.get_device_name(device)}; --gpu_ids {','.join(map(str, gpu_ids))}, "
              f"{torch.cuda.device_count()} visible)", flush=True)


def refuse_torchrun(command: str) -> None:
    """Raise a UserError when started by torchrun: command runs one process on one device."""
    if launched_by_torchrun():
        raise UserError(f"{command} runs in one process on one device: start it without torchrun (under torchrun "
                        "every process would repeat the whole run)")


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Return values averaged over the torchrun processes (unchanged when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def setup(opt: argparse.Namespace) -> None:
    """Join the process group when started by torchrun; sets opt.distributed, opt.rank, opt.world_size.

    On CUDA each process takes its own GPU (first_device; opt.gpu_ids becomes [that GPU]).
    """
    opt.distributed = launched_by_torchrun()
    opt.rank, opt.world_size = 0, 1
    if not opt.distributed:
        return
    if opt.gpu_ids:
        gpu = first_device(opt.gpu_ids)
        opt.gpu_ids = [gpu]
        torch.cuda.set_device(gpu)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
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


def broadcast_int(value: int, device: torch.device) -> int:
    """Return rank 0's integer (64 bits) on every rank (value itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def max_over_ranks(value: int, device: torch.device) -> int:
    """Return the largest of every rank's integer (value itself when not distributed); every rank waits."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def all_ranks_true(flag: torch.Tensor) -> bool:
    """Return True when the boolean tensor flag (one value, on the model's device) is True on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    tensor = flag.detach().reshape(1).to(torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def gather_to_main(obj: Any) -> list[Any] | None:
    """Return every rank's obj, in rank order, on rank 0 and None on the others ([obj] when not distributed).

    A collective: every rank calls it at the same point. obj is pickled (any picklable value).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def wrap(net: nn.Module, gpu_ids: list[int], find_unused_parameters: bool = False) -> nn.Module:
    """Return net wrapped in DistributedDataParallel on this process's GPU (gpu_ids, [] on the CPU), for torchrun."""
    device_ids = gpu_ids or None
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


def weight_sync_line(world_size: int, difference: float, ema_difference: float | None = None) -> str:
    """Return the line rank 0 prints at the end of a torchrun training: the largest weight difference between ranks.

    With an EMA of the weights (--ema_decay) the line also gives the largest difference of the ranks' EMAs.
    """
    ema = "" if ema_difference is None else f", of the EMA: {ema_difference:g}"
    return f"DDP: {world_size} processes, largest weight difference from rank 0: {difference:g}{ema}"


def weight_difference_in(output: str) -> float | None:
    """Return the largest weight difference (weights or EMA) a training's output reports (weight_sync_line), or None.

    None when the output has no such line.
    """
    line = r"^DDP: \d+ processes, largest weight difference from rank 0: ([^,\s]+)(?:, of the EMA: (\S+))?$"
    found = re.findall(line, output, re.MULTILINE)
    return max(float(value) for value in found[-1] if value) if found else None
