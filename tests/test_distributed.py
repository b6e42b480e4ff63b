"""torchrun set-up and agreement (util/distributed.py): GPU selection, the group's timeout, one decision for all."""

from __future__ import annotations

import argparse
import datetime
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.base_model import NonFiniteLossError
from models.ibcln_model import IBCLNModel
from options.train_options import TrainOptions
from util import distributed


def torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    """Make this process look like rank `rank` (local rank too) of 2 started by torchrun."""
    for key, value in (("WORLD_SIZE", "2"), ("RANK", str(rank)), ("LOCAL_RANK", str(rank))):
        monkeypatch.setenv(key, value)


def test_each_torchrun_process_selects_its_own_gpu_first(tmp_path, monkeypatch: pytest.MonkeyPatch):
    selected = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    args = ["--dataroot", str(tmp_path), "--gpu_ids", "0", "--checkpoints_dir", str(tmp_path / "c")]
    TrainOptions().parse(args, save=False)
    assert selected == [0]  # a single process takes the first of --gpu_ids
    torchrun_env(monkeypatch, 1)
    selected.clear()
    TrainOptions().parse(args, save=False)
    assert selected == [1]  # never GPU 0: no CUDA context of rank 1 there


def test_the_process_group_waits_long_enough_for_a_validation_on_rank_0(monkeypatch: pytest.MonkeyPatch):
    calls = []
    torchrun_env(monkeypatch, 1)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    opt = argparse.Namespace(gpu_ids=[])
    distributed.setup(opt)
    assert calls == [{"backend": "gloo", "timeout": distributed.PROCESS_GROUP_TIMEOUT}]
    assert distributed.PROCESS_GROUP_TIMEOUT >= datetime.timedelta(hours=1)  # NCCL's default is 10 minutes
    assert (opt.distributed, opt.rank, opt.world_size) == (True, 1, 2)


def _check_losses(rank: int, store: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        model = argparse.Namespace(loss_D=torch.tensor(0.5), loss_G=torch.tensor(math.nan if rank == 1 else 0.7))
        try:
            IBCLNModel.check_finite(model, ("D", "G"))
            results.put((rank, "stepped"))
        except NonFiniteLossError as err:
            results.put((rank, str(err)))
        dist.barrier()  # both ranks got here: neither was left waiting in a collective
    finally:
        dist.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_check_losses, args=(str(tmp_path / "store"), results), nprocs=2, start_method="spawn")
    found = dict(results.get(timeout=60) for _ in range(2))
    assert found == {0: "a loss is NaN or Inf in another process", 1: "loss G is nan"}
