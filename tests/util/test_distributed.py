"""torchrun (util/distributed.py): each rank's GPU, the group's timeout, one decision for all, the weight-sync line, and
the commands that refuse it."""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import REPO_ROOT, build_tiny_dataset, script_env

from models.base_model import NonFiniteLossError
from models.ibcln_model import IBCLNModel
from options.train_options import TrainOptions
from util import distributed
from util.errors import UserError


def torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    """Make this process look like rank `rank` (local rank too) of 2 started by torchrun."""
    for key, value in (("WORLD_SIZE", "2"), ("RANK", str(rank)), ("LOCAL_RANK", str(rank))):
        monkeypatch.setenv(key, value)


def test_each_torchrun_process_selects_its_own_gpu_first(tmp_path, monkeypatch: pytest.MonkeyPatch):
    selected = _fake_gpus(monkeypatch, 2)
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


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_check_losses, args=(str(tmp_path / "store"), results), nprocs=2, start_method="spawn")
    found = dict(results.get(timeout=60) for _ in range(2))
    assert found == {0: "a loss is NaN or Inf in another process", 1: "loss G is nan"}


# ----- which GPU each torchrun process takes --------------------------------------------------------------------

@pytest.mark.parametrize(("gpu_ids", "local", "local_size", "visible", "expected"), [
    ([2, 3], 0, 2, 4, 2), ([2, 3], 1, 2, 4, 3),  # --gpu_ids names one GPU per process
    ([0], 1, 2, 2, 1), ([0], 3, 4, 2, 1),  # too few ids: the visible GPUs in turn
    ([0], 1, 2, 1, 0),  # a launcher showing each process its own GPU: every process sees a GPU 0
])
def test_each_rank_gets_its_gpu_from_gpu_ids_or_else_from_the_visible_ones(gpu_ids, local, local_size, visible,
                                                                         expected):
    assert distributed.rank_gpu(gpu_ids, local, local_size, visible) == expected


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> list[int]:
    """Make torch see `count` GPUs; return the list that records torch.cuda.set_device's calls."""
    selected: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Fake GPU {device}")
    return selected


def test_torchrun_ranks_train_on_the_gpus_that_gpu_ids_names_and_say_so_first(tmp_path, monkeypatch, capsys):
    selected = _fake_gpus(monkeypatch, 4)
    torchrun_env(monkeypatch, 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    opt = TrainOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "2,3", "--checkpoints_dir",
                                str(tmp_path / "c")], save=False)
    assert selected == [3]  # not GPU 1, its local rank
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "rank 1 of 2 (local rank 1): cuda:3 (Fake GPU 3; --gpu_ids 2,3, 4 visible)"
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs["backend"]))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    distributed.setup(opt)
    assert opt.gpu_ids == [3] and selected == [3, 3] and calls == ["nccl"]


def test_a_launcher_that_shows_each_rank_one_gpu_is_accepted(tmp_path, monkeypatch, capsys):
    # srun --gpus-per-task=1 or CUDA_VISIBLE_DEVICES per process: local rank 1 sees one GPU, its own, as GPU 0.
    selected = _fake_gpus(monkeypatch, 1)
    torchrun_env(monkeypatch, 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    opt = TrainOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "0", "--checkpoints_dir",
                                str(tmp_path / "c")], save=False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: None)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    distributed.setup(opt)  # no "lower --nproc_per_node"
    assert opt.gpu_ids == [0] and selected == [0, 0]
    assert capsys.readouterr().out.startswith("rank 1 of 2 (local rank 1): cuda:0 (Fake GPU 0; --gpu_ids 0, 1 visible)")


def test_the_weight_sync_line_reads_back_as_the_difference_it_reports():
    for value in (0.0, 1.5e-07, 2.0):
        output = f"epoch 1\n{distributed.weight_sync_line(2, value)}\ntraining done\n"
        assert distributed.weight_difference_in(output) == pytest.approx(value)
    assert distributed.weight_difference_in("training done\n") is None  # no line: not 0


# ----- the commands that use one device refuse torchrun ---------------------------------------------------------

def test_test_evaluate_and_remove_reflection_refuse_torchrun_with_one_line(tmp_path, monkeypatch):
    import remove_reflection  # noqa: TID251 (its refusal of torchrun)
    from options.evaluate_options import EvaluateOptions
    from options.test_options import TestOptions

    torchrun_env(monkeypatch, 0)
    monkeypatch.setattr("sys.argv", ["test.py"])
    with pytest.raises(UserError, match=r"^test.py runs in one process on one device: start it without torchrun"):
        TestOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "-1"], save=False)
    monkeypatch.setattr("sys.argv", ["evaluate.py"])
    with pytest.raises(UserError, match=r"^evaluate.py runs in one process"):
        EvaluateOptions().parse(["--sets", f"a={tmp_path}", "--gpu_ids", "-1"], save=False)
    with pytest.raises(UserError, match=r"^remove_reflection.py runs in one process"):
        remove_reflection.main([str(tmp_path), "--weights", str(tmp_path / "none")])


@pytest.mark.slow
def test_test_py_under_torchrun_stops_every_process_before_any_work(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "test.py", "--dataroot", str(root), "--name", "x", "--gpu_ids", "-1", "--results_dir",
                           str(tmp_path / "results"), "--checkpoints_dir", str(tmp_path / "c")], cwd=REPO_ROOT,
                          env=script_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    refusals = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.endswith("test.py runs in one process on one device: start it without torchrun (under "
                                 "torchrun every process would repeat the whole run)")]
    assert len(refusals) == 2, proc.stdout[-2000:] + proc.stderr[-3000:]  # one line from each process
    assert not (tmp_path / "results").exists()
