"""Keeping the K best checkpoints by validation score (--keep_best) and the N last epoch checkpoints (--keep_last):
models/retention.py, and both across a resume."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import Runs

from models import IBCLNConfig, IBCLNModel, checkpoint
from models.retention import INDEX_NAME, BestCheckpoints, epochs_to_prune, ranked
from util.errors import UserError

KEY = "PSNR_T_3"


def entry(epoch: int, score: float) -> dict:
    """Return an index entry."""
    return {"epoch": epoch, "prefix": f"best_epoch{epoch}", KEY: score}


def prefixes(folder: Path) -> set[str]:
    """Return the checkpoint prefixes present in folder."""
    return set(checkpoint.available(str(folder)))


# ----- the rules --------------------------------------------------------------------------------------------


def test_ranked_keeps_the_highest_scores_the_earlier_epoch_on_a_tie_and_never_nan():
    entries = [entry(1, 20.0), entry(2, math.nan), entry(3, 22.0), entry(4, 20.0), entry(5, 21.0)]
    assert [e["epoch"] for e in ranked(entries, KEY, 3)] == [3, 5, 1]
    assert [e["epoch"] for e in ranked(entries, KEY, 10)] == [3, 5, 1, 4]
    assert ranked(entries, KEY, 0) == []


def test_epochs_to_prune_keeps_the_n_latest_up_to_the_current_epoch_and_leaves_later_ones():
    assert epochs_to_prune([5, 1, 3, 2, 4], 5, 2) == [1, 2, 3]
    assert epochs_to_prune([1, 2, 3, 7, 8], 3, 2) == [1]  # 7 and 8: a resume from epoch 3 reaches them later
    assert epochs_to_prune([1, 2], 2, 5) == []
    assert epochs_to_prune([1, 2, 3], 3, 0) == []


@pytest.fixture
def model(tmp_path) -> IBCLNModel:
    """A test-phase model whose save_dir is tmp_path/run (checkpoint.save works with it)."""
    return IBCLNModel(IBCLNConfig(ngf=8, checkpoints_dir=str(tmp_path), name="run"))


def test_the_k_best_are_saved_indexed_and_the_displaced_removed(model):
    folder = Path(model.save_dir)
    kept = BestCheckpoints(str(folder), KEY, 3)
    scores = {1: 10.0, 2: 15.0, 3: 12.0, 4: 14.0, 5: 11.0, 6: 16.0}
    outcome = {epoch: kept.offer(model, epoch, epoch * 4, score, {"wandb_run_id": "x"})
               for epoch, score in scores.items()}
    assert outcome == {1: True, 2: True, 3: True, 4: True, 5: False, 6: True}
    assert prefixes(folder) == {"best_epoch6", "best_epoch2", "best_epoch4"}
    index = json.loads((folder / INDEX_NAME).read_text())
    assert index == {"metric": KEY, "keep_best": 3,
                     "checkpoints": [entry(6, 16.0), entry(2, 15.0), entry(4, 14.0)]}
    state = checkpoint.load_extra(model, "best_epoch4")
    assert state == {"wandb_run_id": "x", KEY: 14.0} and checkpoint.saved_epoch(model, "best_epoch4") == 4
    assert not list(folder.glob("best_epoch1*")) and not list(folder.glob("best_epoch3*"))


def test_a_resume_drops_the_entries_of_later_epochs_and_a_new_run_starts_afresh(model):
    folder = Path(model.save_dir)
    kept = BestCheckpoints(str(folder), KEY, 3)
    for epoch, score in {1: 10.0, 2: 15.0, 3: 12.0, 4: 14.0}.items():
        kept.offer(model, epoch, epoch, score, {})
    assert prefixes(folder) == {"best_epoch2", "best_epoch3", "best_epoch4"}
    resumed = BestCheckpoints(str(folder), KEY, 3)
    assert resumed.resume(3) == [4]  # epoch 4 is trained and validated again
    assert resumed.entries == [entry(2, 15.0), entry(3, 12.0)]
    assert prefixes(folder) == {"best_epoch2", "best_epoch3"}
    assert json.loads((folder / INDEX_NAME).read_text())["checkpoints"] == resumed.entries
    smaller = BestCheckpoints(str(folder), KEY, 1)
    assert smaller.resume(3) == [3] and prefixes(folder) == {"best_epoch2"}
    BestCheckpoints(str(folder), KEY, 3).start()
    assert prefixes(folder) == set() and not (folder / INDEX_NAME).exists()


def test_a_best_epoch_checkpoint_the_index_does_not_list_is_removed(model):
    folder = Path(model.save_dir)
    checkpoint.save(model, "best_epoch9", 9, 9)  # as a crash between the save and the index leaves it
    checkpoint.save(model, "9", 9, 9)
    kept = BestCheckpoints(str(folder), KEY, 2)
    kept.offer(model, 1, 1, 10.0, {})
    assert prefixes(folder) == {"best_epoch1", "9"}


def test_an_unreadable_index_is_a_one_line_error_naming_it(model):
    folder = Path(model.save_dir)
    folder.mkdir(parents=True)
    (folder / INDEX_NAME).write_text("{not json")
    with pytest.raises(UserError, match=f"{folder / INDEX_NAME}: not a --keep_best index") as err:
        BestCheckpoints(str(folder), KEY, 3).resume(1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("flags, message", [
    (["--keep_best", "-1"], "--keep_best -1: use a positive number, or 0 for off"),
    (["--keep_last", "-2"], "--keep_last -2: use a positive number, or 0 for off"),
    (["--keep_last", "2", "--save_epoch_freq", "0"], "--keep_last 2 prunes the epoch checkpoints of --save_epoch_freq"),
])
def test_bad_keep_flags_are_one_line_errors(make_options, flags, message):
    with pytest.raises(UserError, match=message):
        make_options("train", "--dataroot", "x", *flags)


def test_keep_best_needs_validation(make_options, tiny_dataset):
    from evaluation.validation import open_validation_set

    with pytest.raises(UserError, match="--keep_best 3 needs --val_dataroot"):
        open_validation_set(make_options("train", "--dataroot", tiny_dataset, "--keep_best", "3"))


# ----- training runs ----------------------------------------------------------------------------------------

# 6 epochs of 2 steps (4 samples, batch 2) at 32x32, validated after each, an epoch checkpoint after each; at this
# learning rate the scores go up and down (T_3 PSNR by epoch 8.33, 8.50, 10.09, 10.03, 9.07, 9.08), so the 3 best
# (3, 4, 6) are not the 3 last, and epoch 5 enters them before epoch 6 displaces it.
SIX = ("--seed", "3", "--num_threads", "0", "--dataset_size", "4", "--niter", "6", "--niter_decay", "0",
       "--lr", "0.002", "--save_latest_freq", "1000", "--print_freq", "4", "--display_freq", "1000", "--save_best",
       "--keep_best", "3")


def val_scores(folder: Path) -> dict[int, float]:
    """Return epoch -> the PSNR_T_3 of val_log.csv."""
    with open(folder / "val_log.csv", newline="") as f:
        return {int(r["epoch"]): float(r[KEY]) for r in csv.DictReader(f)}


def index(folder: Path) -> list[dict]:
    """Return the checkpoints listed in best_checkpoints.json."""
    return json.loads((folder / INDEX_NAME).read_text())["checkpoints"]


def assert_best_three(folder: Path) -> list[int]:
    """Assert that the index and the best_epoch files are the 3 best epochs of val_log.csv; return their epochs."""
    scores = val_scores(folder)
    best = sorted(scores, key=lambda epoch: (-scores[epoch], epoch))[:3]
    assert len(scores) == 6 and best != [6, 5, 4]
    assert index(folder) == [entry(epoch, scores[epoch]) for epoch in best]
    assert {p for p in prefixes(folder) if p.startswith("best_epoch")} == {f"best_epoch{e}" for e in best}
    for epoch in best:
        assert (folder / f"best_epoch{epoch}_train_state.pth").is_file()
    return best


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """'whole': 6 validations with --keep_best 3 --keep_last 2; 'all': the same without --keep_last."""
    runs = Runs(tmp_path_factory.mktemp("keep"))
    runs.train("whole", *SIX, "--keep_last", "2")
    runs.train("all", *SIX)
    return runs


@pytest.mark.slow
def test_keep_best_3_over_6_validations_leaves_the_3_best_of_val_log(runs):
    folder = runs.folder("whole")
    best = assert_best_three(folder)
    # 'best' (--save_best) is the first of them, with the same networks
    assert torch.load(folder / "best_train_state.pth", weights_only=True)["epoch"] == best[0]
    for net in ("G_T", "G_R", "D"):
        saved = [torch.load(folder / f"{prefix}_net_{net}.pth", weights_only=True)
                 for prefix in ("best", f"best_epoch{best[0]}")]
        assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


@pytest.mark.slow
def test_keep_last_prunes_older_epoch_checkpoints_and_never_latest_final_or_best(runs):
    present = prefixes(runs.folder("whole"))
    assert {p for p in present if p.isdigit()} == {"5", "6"}
    assert {"latest", "final", "best"} <= present
    assert (runs.folder("whole") / "latest_train_state.pth").is_file()
    assert {p for p in prefixes(runs.folder("all")) if p.isdigit()} == {str(e) for e in range(1, 7)}


@pytest.mark.slow
def test_both_survive_a_stop_and_resume(runs):
    # Call 13 is the G step of epoch 4's first step: the run stops in the middle of epoch 4.
    runs.train("stopped", *SIX, "--keep_last", "2", "--num_threads", "2", stop_at_call=13, expect=143)
    assert {p for p in prefixes(runs.folder("stopped")) if p.isdigit()} == {"2", "3"}
    out = runs.train("stopped", *SIX, "--keep_last", "2", "--continue_train")
    assert "resuming at sample 2 of epoch 4" in out
    assert index(runs.folder("stopped")) == index(runs.folder("whole"))
    assert prefixes(runs.folder("stopped")) == prefixes(runs.folder("whole"))
    assert_best_three(runs.folder("stopped"))


@pytest.mark.slow
def test_a_resume_from_an_earlier_epoch_keeps_no_entry_of_an_epoch_no_longer_run(runs):
    folder = runs.ckpt / "shorter"
    shutil.copytree(runs.folder("all"), folder)
    before = index(folder)
    # resume after epoch 3 and stop after epoch 4: epochs 5 and 6 no longer exist
    out = runs.train("shorter", *SIX, "--continue_train", "--epoch", "3", "--niter", "4")
    gone = sorted(e["epoch"] for e in before if e["epoch"] > 3)
    if gone:
        assert f"best_epoch checkpoint(s) of epoch(s) {', '.join(map(str, gone))} removed" in out
    scores = val_scores(folder)
    assert sorted(scores) == [1, 2, 3, 4]
    survivors = [e for e in before if e["epoch"] <= 3] + [entry(4, scores[4])]
    assert index(folder) == ranked(survivors, KEY, 3)
    assert all(e[KEY] == scores[e["epoch"]] for e in index(folder))
    assert {p for p in prefixes(folder) if p.startswith("best_epoch")} == {e["prefix"] for e in index(folder)}
