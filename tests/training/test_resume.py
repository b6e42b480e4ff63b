"""Exact resume from any stop (training/loop.py, models/checkpoint.py, data/sampling.py, util/signals.py).

Every run here trains 2 epochs of 12 samples (batch 2, so 6 steps an epoch) at 32x32 on the CPU, with real
pairs and mixtures, a decaying learning rate, validation after each epoch, loss lines every 4 samples and
'latest' every 4 samples (helpers.Runs); runs are compared bit for bit with an uninterrupted one.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO_ROOT,
    TINY_TRAIN_FLAGS,
    TORCHRUN,
    Runs,
    assert_same_weights,
    build_tiny_dataset,
    loss_rows,
    parse_options,
    script_env,
    signal_at,
    training_state,
    val_rows,
)

from models import checkpoint
from options.model_config import create_model
from util.distributed import weight_difference_in

pytestmark = pytest.mark.slow  # every test trains with train.py or torchrun


def same_random_state(a: dict, b: dict) -> bool:
    """Return True when two saved rank states hold the same python, numpy and torch generator states."""
    (name_a, keys_a, *rest_a), (name_b, keys_b, *rest_b) = a["rng_numpy"], b["rng_numpy"]
    return (a["rng_python"] == b["rng_python"] and torch.equal(a["rng_torch"], b["rng_torch"])
            and name_a == name_b and torch.equal(keys_a, keys_b) and rest_a == rest_b)


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
    saved = training_state(runs.folder("stopped"))
    assert (saved["epoch"], saved["position"], saved["total_iters"]) == (1, 6, 18)
    out = runs.train("stopped", "--seed", "3", "--num_threads", "0", "--continue_train")
    assert "resuming at sample 6 of epoch 2 (18 samples seen)" in out
    assert_same_weights(runs.folder("whole"), runs.folder("stopped"))
    assert_same_logs(runs.folder("whole"), runs.folder("stopped"))


def test_sigterm_to_the_whole_process_group_mid_epoch_resumes_exactly(runs):
    proc = subprocess.Popen(runs.command("killed", "--seed", "3", "--num_threads", "2"), cwd=REPO_ROOT,
                            env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    # At the mid-epoch save of epoch 2, while the workers are serving.
    output = signal_at(proc, lambda line: line.startswith("saving the latest model (epoch 2, total_iters 16)"),
                       signal.SIGTERM, group=True)
    assert proc.returncode == 143, output[-3000:]
    assert "Traceback" not in output and "killed by signal" not in output
    saved = training_state(runs.folder("killed"))
    assert saved["epoch"] == 1 and 4 <= saved["position"] < 12  # in the middle of epoch 2
    runs.train("killed", "--seed", "3", "--num_threads", "2", "--continue_train")
    assert_same_weights(runs.folder("whole"), runs.folder("killed"))
    assert_same_logs(runs.folder("whole"), runs.folder("killed"))


def test_a_run_without_seed_records_the_one_it_drew_and_resumes_exactly(runs):
    out = runs.train("unseeded", "--num_threads", "0", stop_at_call=10, expect=143)
    seed = int(re.search(r"^seed: (\d+) \(drawn at random", out, flags=re.MULTILINE).group(1))
    saved = training_state(runs.folder("unseeded"))
    assert saved["seed"] == seed and saved["position"] == 10
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
    saved = training_state(runs.folder("ddp_stopped"))
    assert (saved["epoch"], saved["position"], len(saved["ranks"])) == (1, 4, 2)
    out = runs.train("ddp_stopped", "--seed", "3", "--num_threads", "0", "--continue_train", torchrun=True)
    assert "resuming at sample 4 of epoch 2" in out and weight_difference_in(out) == 0  # ranks in sync
    whole = training_state(runs.folder("ddp_whole"), "final")
    stopped = training_state(runs.folder("ddp_stopped"), "final")
    for rank in range(2):  # every rank drew as many random numbers from the same streams
        assert same_random_state(whole["ranks"][rank], stopped["ranks"][rank]), rank
    assert not same_random_state(whole["ranks"][0], whole["ranks"][1])
    assert_same_weights(runs.folder("ddp_whole"), runs.folder("ddp_stopped"))
    assert loss_rows(runs.folder("ddp_whole")) == loss_rows(runs.folder("ddp_stopped"))
    assert val_rows(runs.folder("ddp_whole")) == val_rows(runs.folder("ddp_stopped"))


# ----- the ranks of a resumed torchrun run ----------------------------------------------------------------------

RESUME_SCRIPT = """
import sys
import torch
from data import create_dataset
from options.model_config import create_model
from options.train_options import TrainOptions
from util import distributed
from models import checkpoint

opt = TrainOptions().parse(sys.argv[1:], save=False)
distributed.setup(opt)
model = create_model(opt)
checkpoint.load_for_run(model, opt)
model.setup(opt.verbose)
checkpoint.resume(model, opt)
sample = create_dataset(opt).dataset[0]
draws = torch.rand(3).tolist() + [float(sample["I"].sum())]
mean = float(distributed.mean_over_ranks(torch.tensor([float(opt.rank)]))[0])
print(f"rank {opt.rank} draws {draws} mean {mean}", flush=True)
del model  # its DDP wrappers hold the process group: with them alive at exit, gloo's teardown can abort
distributed.barrier()  # both ranks done before either tears down gloo (a rank leaving early can abort the other)
distributed.cleanup()
"""


def test_ranks_draw_different_samples_after_a_torchrun_resume(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    args = ["--dataroot", str(root), "--name", "ddp", "--checkpoints_dir", str(tmp_path / "c"), *TINY_TRAIN_FLAGS]
    model = create_model(parse_options("train", args))
    model.setup()
    checkpoint.save(model, "latest", 1, 2)
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    proc = subprocess.run([*TORCHRUN, str(script), *args, "--continue_train"], cwd=REPO_ROOT, env=script_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("rank "):
            rank, rest = line[5:].split(" draws ")
            draws, mean = rest.split(" mean ")
            found[int(rank)] = (draws, float(mean))
    assert sorted(found) == [0, 1], proc.stdout[-3000:]
    assert found[0][0] != found[1][0]  # random draws and the first sample differ between the ranks
    assert found[0][1] == found[1][1] == 0.5  # logged losses are averaged over the ranks
