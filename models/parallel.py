"""Running a network on several GPUs of one process: DataParallel with the caller's autocast dtype in every replica
and no replica called without samples, placing a network on its devices, and unwrapping it again.

torchrun's DistributedDataParallel (one process per GPU) is util/distributed.py's.
"""

from __future__ import annotations

import torch
from torch import nn


def unwrap(net: nn.Module) -> nn.Module:
    """Return the module inside a DataParallel or DistributedDataParallel wrapper (net itself otherwise)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return net.module if isinstance(net, wrappers) else net


def scatter_for_replicas(scattered_inputs: tuple, scattered_kwargs: tuple) -> tuple[tuple, tuple]:
    """Return (inputs, kwargs) per replica, keeping only replicas that received a share of the batch.

    torch's scatter_kwargs copies keyword arguments (heads=...) to every device but splits a batch of B
    samples into min(B, devices) chunks, then pads the inputs with empty tuples: a batch smaller than the
    number of GPUs would call a replica with keywords and no input.
    """
    given = sum(1 for args in scattered_inputs if args)
    if not given or not scattered_kwargs:  # nothing to trim (keyword-only calls keep torch's behaviour)
        return scattered_inputs, scattered_kwargs
    return scattered_inputs[:given], scattered_kwargs[:given]


def with_autocast_of_caller(replicas: list, device_type: str) -> list:
    """Return replicas that each run under this thread's autocast state for device_type (unchanged without it).

    DataParallel runs each replica in its own thread; autocast's dtype is per thread, and torch's worker
    re-enters autocast with only "enabled", so a replica would fall back to the device's default dtype
    (float16 on CUDA) under --amp bf16.
    """
    if not torch.is_autocast_enabled(device_type):
        return replicas
    dtype = torch.get_autocast_dtype(device_type)

    def under_autocast(replica: nn.Module):
        def call(*args, **kwargs):
            with torch.autocast(device_type, dtype=dtype):
                return replica(*args, **kwargs)
        return call

    return [under_autocast(replica) for replica in replicas]


class DataParallel(nn.DataParallel):
    """nn.DataParallel that passes the caller's autocast dtype to the replicas and copes with batches < GPUs."""

    def scatter(self, inputs: tuple, kwargs: dict | None, device_ids: list) -> tuple[tuple, tuple]:
        """Return the per-replica (inputs, kwargs), one pair per GPU that received samples."""
        return scatter_for_replicas(*super().scatter(inputs, kwargs, device_ids))

    def parallel_apply(self, replicas: list, inputs: tuple, kwargs: tuple) -> list:
        """Return the replicas' outputs, each computed under the caller's autocast dtype."""
        return super().parallel_apply(with_autocast_of_caller(replicas, self.src_device_obj.type), inputs, kwargs)


def place_net(net: nn.Module, gpu_ids: list[int]) -> nn.Module:
    """Return net on the first GPU of gpu_ids (wrapped in DataParallel for several) or on the CPU."""
    if gpu_ids:
        net.to(torch.device("cuda", gpu_ids[0]))
        if len(gpu_ids) > 1:
            net = DataParallel(net, gpu_ids)
    return net
