"""Exact resume from any stop (training/loop.py, models/checkpoint.py, data/sampling.py, util/signals.py).

Every run here trains 2 epochs of 12 samples (batch 2, so 6 steps an epoch) at 32x32 on the CPU, with real
pairs and mixtures, a decaying learning rate, validation after each epoch, loss lines every 4 samples and
'latest' every 4 samples; runs are compared bit for bit with an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, TEST_THREADS, build_tiny_dataset

from util.distributed import weight_difference_in

NETS = ("G_T", "G_R", "D")
FLAGS = ["--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random", "--ngf", "8",
         "--ndf", "8", "--load_size", "36", "--crop_size", "32", "--batch_size", "2", "--dataset_size", "12",
         "--niter", "1", "--niter_decay", "1", "--print_freq", "4", "--save_latest_freq", "4", "--display_freq", "4",
         "--update_html_freq", "8", "--save_epoch_freq", "1", "--natural_prob", "0.5"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

# train.py with an optimiser-step hook that sends SIGTERM to its own process during the N-th optimiser step
# (G and D step in turn, so an even N is a D step: G already updated, D not yet) of rank STOP_RANK.
STOP_IN_STEP = """
import os, runpy, signal, sys
from torch.optim.optimizer import register_optimizer_step_pre_hook

calls = 0


def stop_during_step(optimizer, args, kwargs):
    global calls
    calls += 1
    if calls == int(os.environ["STOP_AT_CALL"]) and os.environ.get("RANK", "0") == os.environ["STOP_RANK"]:
        os.kill(os.getpid(), signal.SIGTERM)


register_optimizer_step_pre_hook(stop_during_step)
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def environment(**extra: str) -> dict[str, str]:
    """Return the environment of a training subprocess: this worktree's code, one thread, extra variables."""
    return dict(os.environ, OMP_NUM_THREADS=TEST_THREADS, PYTHONPATH=str(REPO_ROOT), **extra)


class Runs:
    """Training runs of one dataset, each in checkpoints/<name> under a base folder."""

    def __init__(self, base: Path):
        self.base = base
        self.root = build_tiny_dataset(base / "data", n_train=4, n_test=2, natural=2)
        self.ckpt = base / "checkpoints"
        self.hook = base / "stop_in_step.py"
        self.hook.write_text(STOP_IN_STEP)

    def command(self, name: str, *args: str, stop_at_call: int = 0, torchrun: bool = False) -> list[str]:
        """Return the command line of a run (train.py, under the stopping hook when stop_at_call > 0)."""
        launcher = TORCHRUN if torchrun else [sys.executable]
        script = [str(self.hook), str(REPO_ROOT / "train.py")] if stop_at_call else [str(REPO_ROOT / "train.py")]
        return [*launcher, *script, "--dataroot", str(self.root), "--val_dataroot", str(self.root), "--name", name,
                "--checkpoints_dir", str(self.ckpt), *FLAGS, *args]

    def train(self, name: str, *args: str, stop_at_call: int = 0, stop_rank: int = 0, torchrun: bool = False,
              expect: int = 0) -> str:
        """Run to the end (or to the hook's stop) and return stdout, asserting the exit status."""
        env = environment(STOP_AT_CALL=str(stop_at_call), STOP_RANK=str(stop_rank))
        proc = subprocess.run(self.command(name, *args, stop_at_call=stop_at_call, torchrun=torchrun), cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Traceback" not in proc.stdout + proc.stderr or torchrun, proc.stderr[-3000:]
        return proc.stdout

    def folder(self, name: str) -> Path:
        """Return checkpoints/<name>."""
        return self.ckpt / name


def state(folder: Path, prefix: str = "latest") -> dict:
    """Return a saved training state."""
    return torch.load(folder / f"{prefix}_train_state.pth", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    """Assert that the final networks of two runs are bit-identical."""
    for net in NETS:
        sa = torch.load(a / f"final_net_{net}.pth", weights_only=True)
        sb = torch.load(b / f"final_net_{net}.pth", weights_only=True)
        assert sa.keys() == sb.keys()
        different = [key for key in sa if not torch.equal(sa[key], sb[key])]
        assert not different, f"{net}: {len(different)} of {len(sa)} tensors differ, e.g. {different[0]}"


def same_random_state(a: dict, b: dict) -> bool:
    """Return True when two saved rank states hold the same python, numpy and torch generator states."""
    (name_a, keys_a, *rest_a), (name_b, keys_b, *rest_b) = a["rng_numpy"], b["rng_numpy"]
    return (a["rng_python"] == b["rng_python"] and torch.equal(a["rng_torch"], b["rng_torch"])
            and name_a == name_b and torch.equal(keys_a, keys_b) and rest_a == rest_b)


def loss_rows(folder: Path) -> list[str]:
    """Return the loss lines of loss_log.txt without their timing columns (time, data)."""
    lines = (folder / "loss_log.txt").read_text().splitlines()
    return [re.sub(r", time: [0-9.]+, data: [0-9.]+", "", line) for line in lines if line.startswith("(epoch: ")]


def val_rows(folder: Path) -> list[list[str]]:
    """Return val_log.csv's header and rows without the timing column (seconds)."""
    with open(folder / "val_log.csv", newline="") as f:
        rows = list(csv.reader(f))
    skip = rows[0].index("seconds")
    return [row[:skip] + row[skip + 1:] for row in rows]


def assert_same_logs(a: Path, b: Path) -> None:
    """Assert that two runs wrote the same loss lines and validation rows, row for row, timing aside."""
    assert loss_rows(a) == loss_rows(b) and len(loss_rows(a)) == 6  # 24 samples, a line every 4
    assert val_rows(a) == val_rows(b) and [row[0] for row in val_rows(a)] == ["epoch", "1", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """The dataset, and the uninterrupted run 'whole' (--seed 3, no workers)."""
    runs = Runs(tmp_path_factory.mktemp("resume"))
    runs.train("whole", "--seed", "3", "--num_threads", "0")
    return runs


def test_the_number_of_workers_does_not_change_the_weights(runs):
    runs.train("workers", "--seed", "3", "--num_threads", "2")
    assert_same_weights(runs.folder("whole"), runs.folder("workers"))
    assert_same_logs(runs.folder("whole"), runs.folder("workers"))


def test_a_stop_during_an_optimiser_step_resumes_at_that_sample_exactly(runs):
    # Call 18 is the D step of step 9, sample 6 of epoch 2: after the mid-epoch 'latest' at sample 4 of epoch 2,
    # and 2 samples after the last loss line (the resumed run continues that line's average).
    out = runs.train("stopped", "--seed", "3", "--num_threads", "2", stop_at_call=18, expect=143)
    assert "saving the latest model (epoch 2, total_iters 16)" in out
    assert "terminated (SIGTERM): saving 'latest' (--continue_train resumes at sample 6 of epoch 2)" in out
    saved = state(runs.folder("stopped"))
    assert (saved["epoch"], saved["position"], saved["total_iters"]) == (1, 6, 18)
    out = runs.train("stopped", "--seed", "3", "--num_threads", "0", "--continue_train")
    assert "resuming at sample 6 of epoch 2 (18 samples seen)" in out
    assert_same_weights(runs.folder("whole"), runs.folder("stopped"))
    assert_same_logs(runs.folder("whole"), runs.folder("stopped"))


def test_sigterm_to_the_whole_process_group_mid_epoch_resumes_exactly(runs):
    proc = subprocess.Popen(runs.command("killed", "--seed", "3", "--num_threads", "2"), cwd=REPO_ROOT,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("saving the latest model (epoch 2, total_iters 16)"):  # the workers are serving
            os.killpg(proc.pid, signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=300)
    output = "".join(lines) + rest
    assert proc.returncode == 143, output[-3000:]
    assert "Traceback" not in output and "killed by signal" not in output
    saved = state(runs.folder("killed"))
    assert saved["epoch"] == 1 and 4 <= saved["position"] < 12  # in the middle of epoch 2
    runs.train("killed", "--seed", "3", "--num_threads", "2", "--continue_train")
    assert_same_weights(runs.folder("whole"), runs.folder("killed"))
    assert_same_logs(runs.folder("whole"), runs.folder("killed"))


def test_a_run_without_seed_records_the_one_it_drew_and_resumes_exactly(runs):
    out = runs.train("unseeded", "--num_threads", "0", stop_at_call=10, expect=143)
    seed = int(re.search(r"^seed: (\d+) \(drawn at random", out, flags=re.MULTILINE).group(1))
    assert state(runs.folder("unseeded"))["seed"] == seed and state(runs.folder("unseeded"))["position"] == 10
    runs.train("unseeded", "--num_threads", "0", "--continue_train")
    runs.train("seeded", "--seed", str(seed), "--num_threads", "0")
    assert_same_weights(runs.folder("seeded"), runs.folder("unseeded"))


def test_a_resume_from_an_earlier_epoch_rewrites_the_logs_without_duplicates(runs):
    folder = runs.folder("again")
    shutil.copytree(runs.folder("whole"), folder)  # finished: its logs hold both epochs
    out = runs.train("again", "--seed", "3", "--num_threads", "0", "--continue_train", "--epoch", "1")
    assert "1 row(s) after epoch 1 dropped" in out
    assert "3 line(s) after sample 0 of epoch 2 dropped" in out
    assert_same_weights(runs.folder("whole"), folder)
    assert_same_logs(runs.folder("whole"), folder)


def test_a_torchrun_run_stopped_on_one_rank_resumes_exactly_on_every_rank(runs):
    # 2 processes: 6 samples each per epoch, 3 steps. Rank 1 alone is signalled, during the D step of step 5
    # (sample 4 of epoch 2, after the mid-epoch 'latest' at sample 2); rank 0 agrees and saves.
    runs.train("ddp_whole", "--seed", "3", "--num_threads", "0", torchrun=True)
    out = runs.train("ddp_stopped", "--seed", "3", "--num_threads", "2", stop_at_call=10, stop_rank=1,
                     torchrun=True, expect=1)
    assert "saving the latest model (epoch 2, total_iters 8)" in out
    assert "terminated (SIGTERM): saving 'latest' (--continue_train resumes at sample 4 of epoch 2)" in out
    saved = state(runs.folder("ddp_stopped"))
    assert (saved["epoch"], saved["position"], len(saved["ranks"])) == (1, 4, 2)
    out = runs.train("ddp_stopped", "--seed", "3", "--num_threads", "0", "--continue_train", torchrun=True)
    assert "resuming at sample 4 of epoch 2" in out and weight_difference_in(out) == 0  # ranks in sync
    whole, stopped = state(runs.folder("ddp_whole"), "final"), state(runs.folder("ddp_stopped"), "final")
    for rank in range(2):  # every rank drew as many random numbers from the same streams
        assert same_random_state(whole["ranks"][rank], stopped["ranks"][rank]), rank
    assert not same_random_state(whole["ranks"][0], whole["ranks"][1])
    assert_same_weights(runs.folder("ddp_whole"), runs.folder("ddp_stopped"))
    assert loss_rows(runs.folder("ddp_whole")) == loss_rows(runs.folder("ddp_stopped"))
    assert val_rows(runs.folder("ddp_whole")) == val_rows(runs.folder("ddp_stopped"))
