"""One writer per checkpoint folder (util/run_lock.py) and --continue_train auto, without SLURM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, build_tiny_dataset, parse_options, script_env

from util import run_lock
from util.errors import UserError

HOLD = """
import sys, time
from util.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run outside SLURM and torchrun (as a plain single-machine run does)."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)


def write_lock(folder: Path, **fields) -> None:
    """Write a lock file as another run would have, with this process's values unless fields say otherwise."""
    holder = {**run_lock.this_process().__dict__, "token": "theirs", **fields}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / run_lock.LOCK_NAME).write_text(json.dumps(holder))


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path, monkeypatch, no_job):
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    first = run_lock.RunLock(str(tmp_path))
    first.acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "102")
    with pytest.raises(UserError) as err:
        run_lock.RunLock(str(tmp_path)).acquire()
    message = str(err.value)
    assert "\n" not in message and f"pid {os.getpid()} on host {socket.gethostname()}, SLURM job 101" in message
    assert f"{tmp_path} is in use by another training run" in message
    first.release()
    assert not (tmp_path / run_lock.LOCK_NAME).exists()
    with run_lock.RunLock(str(tmp_path)):  # free again
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["slurm_job"] == "102"


def test_a_lock_on_another_host_is_refused(tmp_path, no_job):
    write_lock(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(UserError, match="pid 1 on host elsewhere"):
        run_lock.RunLock(str(tmp_path)).acquire()


@pytest.mark.slow
def test_a_lock_left_by_a_sigkilled_run_is_taken_over_with_a_note(tmp_path, capsys, no_job):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=script_env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=f"pid {holder.pid} "):  # alive: refused
            run_lock.RunLock(str(tmp_path)).acquire()
        holder.send_signal(signal.SIGKILL)
        while Path(f"/proc/{holder.pid}").exists() and "Z" not in Path(f"/proc/{holder.pid}/stat").read_text():
            time.sleep(0.05)  # dead but not yet reaped (a zombie): no longer running
        lock = run_lock.RunLock(str(tmp_path))
        lock.acquire()
    finally:
        holder.kill()
        holder.wait()
    assert f"was left by a run that is no longer running (pid {holder.pid} on host" in capsys.readouterr().out
    assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_reused_pid_is_not_the_holder(tmp_path, capsys, no_job):
    write_lock(tmp_path, started="1")  # this process's pid, but a process that started at another time
    with run_lock.RunLock(str(tmp_path)):
        assert "taken over" in capsys.readouterr().out


def test_a_requeued_job_waits_for_its_earlier_run_to_release_the_lock(tmp_path, monkeypatch, capsys, no_job):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    earlier = run_lock.RunLock(str(tmp_path))
    earlier.acquire()
    threading.Timer(1.0, earlier.release).start()
    start = time.monotonic()
    with run_lock.RunLock(str(tmp_path), wait=30):
        waited = time.monotonic() - start
    assert 0.9 < waited < 10
    assert "waiting up to 30 s for this job's earlier run to release" in capsys.readouterr().out


def test_the_same_job_still_running_here_after_the_wait_is_refused(tmp_path, monkeypatch, no_job):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    with run_lock.RunLock(str(tmp_path)):
        with pytest.raises(UserError, match=r"an earlier run of this job still holds its lock after 0\.5 s"):
            run_lock.RunLock(str(tmp_path), wait=0.5).acquire()


def test_the_same_job_on_another_host_is_taken_over_after_the_wait(tmp_path, monkeypatch, capsys, no_job):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    write_lock(tmp_path, host="elsewhere", pid=1, slurm_job="7")
    with run_lock.RunLock(str(tmp_path), wait=0.2):
        assert "still held by this job's earlier run on another host" in capsys.readouterr().out


def test_release_never_removes_another_runs_lock(tmp_path, no_job):
    lock = run_lock.RunLock(str(tmp_path))
    lock.acquire()
    write_lock(tmp_path, host="elsewhere")  # e.g. taken over by another run meanwhile
    lock.release()
    assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["host"] == "elsewhere"


def test_the_training_run_holds_the_lock_and_releases_it_on_an_error(make_options, tiny_dataset, no_job):
    from training.loop import hold_checkpoint_folder

    opt = make_options("train", "--dataroot", tiny_dataset, "--name", "held", "--continue_train", "auto")
    opt.distributed, opt.rank, opt.world_size = False, 0, 1
    path = Path(opt.checkpoints_dir) / "held" / run_lock.LOCK_NAME
    with pytest.raises(RuntimeError), hold_checkpoint_folder(opt):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert opt.continue_train is False  # nothing to resume: a new run
        raise RuntimeError("a bug in the middle of training")
    assert not path.exists()


def test_a_second_run_is_refused_before_its_options_are_written(make_options, tiny_dataset, no_job):
    folder = Path(make_options("train", "--dataroot", tiny_dataset).checkpoints_dir) / "busy"
    with run_lock.RunLock(str(folder)):
        with pytest.raises(UserError, match="is in use by another training run"):
            make_options("train", "--dataroot", tiny_dataset, "--name", "busy", save=True)
    assert not (folder / "train_opt.txt").exists()
    make_options("train", "--dataroot", tiny_dataset, "--name", "busy", save=True)  # released: it may start


# ----- --continue_train auto ------------------------------------------------------------------------------------
def test_continue_train_takes_auto_or_nothing(make_options, tiny_dataset):
    assert make_options("train", "--dataroot", tiny_dataset, "--continue_train").continue_train is True
    assert make_options("train", "--dataroot", tiny_dataset).continue_train is False
    with pytest.raises(SystemExit):
        make_options("train", "--dataroot", tiny_dataset, "--continue_train", "latest")
    with pytest.raises(UserError, match="always resumes from 'latest'"):
        make_options("train", "--dataroot", tiny_dataset, "--continue_train", "auto", "--epoch", "5")
    # A fine-tuning run that restarts itself: the first start fine-tunes, later ones resume.
    parse_options("train", ["--dataroot", tiny_dataset, "--gpu_ids", "-1", "--continue_train", "auto",
                            "--pretrained_dir", tiny_dataset])


@pytest.mark.slow
def test_a_sigkilled_run_never_blocks_the_next_one(tmp_path, no_job):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    command = [sys.executable, str(REPO_ROOT / "train.py"), "--dataroot", str(root), "--name", "killed",
               "--checkpoints_dir", str(tmp_path / "c"), "--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1",
               "--vgg_weights", "random", "--ngf", "8", "--ndf", "8", "--load_size", "36", "--crop_size", "32",
               "--dataset_size", "16", "--niter", "1", "--print_freq", "4", "--save_latest_freq", "4", "--seed", "3",
               "--num_threads", "0", "--continue_train", "auto"]
    env = script_env()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    saved = False
    for line in proc.stdout:
        if saved and line.startswith("(epoch: "):  # after a complete save of 'latest'
            os.killpg(proc.pid, signal.SIGKILL)  # no chance to release anything
            break
        saved = saved or line.startswith("saving the latest model")
    proc.communicate(timeout=60)
    lock = tmp_path / "c" / "killed" / run_lock.LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == proc.pid
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"was left by a run that is no longer running (pid {proc.pid} on host" in done.stdout
    assert "--continue_train auto: resuming from 'latest'" in done.stdout and "resuming at sample" in done.stdout
    assert not lock.exists()
