"""TensorBoard and Weights & Biases logging (training/trackers.py, --tensorboard, --wandb PROJECT).

The runs are those of tests/training/test_resume.py (helpers.Runs: 2 epochs of 12 samples, batch 2, 32x32, a loss
line, an image and a 'latest' every 4 samples, validation after each epoch), read back from what the trackers leave
on disk:

- TensorBoard: every event file of checkpoints/<name>/tensorboard/ in name (= creation) order, read with
  tensorboard's own EventFileLoader, with TensorBoard's rule for a restart applied (a SessionLog START at step
  S, written by SummaryWriter(purge_step=S), discards the events of earlier files at step S and later);
- W&B, offline (WANDB_MODE=offline, every wandb folder under the test's tmp dir, nothing leaves the machine):
  each start of the run leaves checkpoints/<name>/wandb/offline-run-<time>-<id>/run-<id>.wandb. That file is
  wandb's transaction log: a 7-byte header (':W&B', 0xBEE1, version 0), then LevelDB's log format (32 KiB
  blocks of records, each with a 7-byte header: checksum, length, type FULL/FIRST/MIDDLE/LAST) framing
  wandb_internal_pb2.Record messages. wandb 0.31 ships no Python reader for it (its Go core reads it), so
  wandb_records() undoes the framing and parses the records with wandb's own protobuf classes; the 'run'
  records give the run id, the 'history' records every logged row with its step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO_ROOT, Runs, assert_same_weights, training_state

from training.trackers import WANDB_RUN_ID, WandB, require_packages
from util.errors import UserError

LOSSES = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]
EVERY_4 = [4, 8, 12, 16, 20, 24]  # loss lines and images: every 4 of the 24 samples
EXPECTED_STEPS = {**{f"loss/{name}": EVERY_4 for name in LOSSES}, "lr": EVERY_4, "samples_per_s": EVERY_4,
                  "images/cascade": EVERY_4,
                  **{f"val/{metric}_{label}": [12, 24] for label in ("I", "T_1", "T_2", "T_3")
                     for metric in ("PSNR", "SSIM")}}
TRACKED = ["--tensorboard", "--wandb", "ibcln-test"]


# ----- reading TensorBoard event files --------------------------------------------------------------------


def tensorboard_events(folder: Path) -> list[tuple[str, int, object]]:
    """Return (tag, step, value) of every event TensorBoard shows for checkpoints/<name>/tensorboard, in order.

    A scalar's value is a float, an image's its encoded bytes.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    files = sorted((folder / "tensorboard").glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder / 'tensorboard'}"
    events: list[tuple[str, int, object]] = []
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                events = [e for e in events if e[1] < event.step]  # the restart purges what follows it
            for value in event.summary.value:
                array = tensor_util.make_ndarray(value.tensor)
                shown = float(array) if array.ndim == 0 else bytes(array[2])  # images: width, height, PNG
                events.append((value.tag, event.step, shown))
    return events


def steps_by_tag(events: list[tuple[str, int, object]]) -> dict[str, list[int]]:
    """Return tag -> its steps in the order they were written."""
    steps: dict[str, list[int]] = {}
    for tag, step, _ in events:
        steps.setdefault(tag, []).append(step)
    return steps


def assert_once_per_step_in_order(steps: dict[str, list[int]]) -> None:
    """Assert that every tag has exactly the expected steps, each once, increasing."""
    assert sorted(steps) == sorted(EXPECTED_STEPS)
    for tag, expected in EXPECTED_STEPS.items():
        assert steps[tag] == expected, tag


def assert_same_values(events_a: list, events_b: list) -> None:
    """Assert that two runs logged the same values at the same steps (samples_per_s, a timing, aside)."""
    def values(events):
        return {(tag, step): value for tag, step, value in events if tag != "samples_per_s"}

    a, b = values(events_a), values(events_b)
    assert a.keys() == b.keys()
    different = [key for key in a if a[key] != b[key]]
    assert not different, different[:5]


# ----- reading offline W&B runs ---------------------------------------------------------------------------


def wandb_records(path: Path) -> Iterator:
    """Yield the wandb_internal_pb2.Record messages of a .wandb transaction log (see the module docstring)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00", data[:7]
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = payload if kind in (1, 2) else pending + payload  # FULL, FIRST start; MIDDLE, LAST continue
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_segments(folder: Path) -> list[tuple[str, list[tuple[int, dict[str, str]]]]]:
    """Return (run id, [(step, {key: JSON value})]) of every start of the run in checkpoints/<name>/wandb, in order."""
    segments = []
    for run_dir in sorted((folder / "wandb").glob("offline-run-*")):
        run_ids, history = [], []
        for path in run_dir.glob("run-*.wandb"):
            for record in wandb_records(path):
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    run_ids.append(record.run.run_id)
                elif kind == "history":
                    row = {(item.key or item.nested_key[0]): item.value_json for item in record.history.item}
                    history.append((record.history.step.num, row))
        assert len(set(run_ids)) == 1, (run_dir, run_ids)
        segments.append((run_ids[0], history))
    return segments


def wandb_events(segments: list) -> list[tuple[str, int, str]]:
    """Return (key, step, JSON value) of every logged value of the segments, in order (wandb's own keys aside)."""
    return [(key, step, value) for _, history in segments for step, row in history for key, value in row.items()
            if not key.startswith("_")]


# ----- the runs -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[Runs]:
    """The dataset and the uninterrupted run 'whole' with both trackers, W&B offline with its folders under tmp."""
    base = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        for variable in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            env.setenv(variable, str(base / "wandb_home"))
        env.delenv("WANDB_API_KEY", raising=False)
        runs = Runs(base)
        runs.train("whole", "--seed", "3", "--num_threads", "0", "--save_best", *TRACKED)
        yield runs


@pytest.mark.slow
def test_tensorboard_holds_every_value_once_per_step(runs):
    events = tensorboard_events(runs.folder("whole"))
    assert_once_per_step_in_order(steps_by_tag(events))
    assert all(value > 0 for tag, _, value in events if tag == "samples_per_s")
    val_log = (runs.folder("whole") / "val_log.csv").read_text().splitlines()
    header, last = val_log[0].split(","), val_log[-1].split(",")
    logged = {tag: value for tag, step, value in events if step == 24}
    assert logged["val/PSNR_T_3"] == pytest.approx(float(last[header.index("PSNR_T_3")]), rel=1e-6)
    assert logged["lr"] == pytest.approx(1e-4)  # the second of 2 epochs, linear decay


@pytest.mark.slow
def test_a_stopped_and_resumed_run_continues_both_logs_once_per_step(runs):
    runs.train("stopped", "--seed", "3", "--num_threads", "2", *TRACKED, stop_at_call=18, expect=143)
    first_id = training_state(runs.folder("stopped"))["extra"][WANDB_RUN_ID]
    runs.train("stopped", "--seed", "3", "--num_threads", "0", "--continue_train", *TRACKED)
    # TensorBoard: the two starts together hold each value once, as the uninterrupted run does.
    events = tensorboard_events(runs.folder("stopped"))
    assert len(list((runs.folder("stopped") / "tensorboard").glob("events.*"))) == 2
    assert_once_per_step_in_order(steps_by_tag(events))
    assert_same_values(tensorboard_events(runs.folder("whole")), events)
    # W&B: two starts of one run, whose id the training state keeps; each value once, steps increasing.
    segments = wandb_segments(runs.folder("stopped"))
    assert [run_id for run_id, _ in segments] == [first_id, first_id]
    assert training_state(runs.folder("stopped"), "final")["extra"][WANDB_RUN_ID] == first_id
    assert max(step for step, _ in segments[0][1]) <= 18 < min(step for step, _ in segments[1][1])
    logged = wandb_events(segments)
    assert_once_per_step_in_order(steps_by_tag(logged))
    whole = wandb_segments(runs.folder("whole"))
    assert_same_values([e for e in wandb_events(whole) if e[0] != "images/cascade"],
                       [e for e in logged if e[0] != "images/cascade"])  # image rows name their own files


@pytest.mark.slow
def test_the_trackers_leave_training_alone(runs):
    runs.train("plain", "--seed", "3", "--num_threads", "0")
    assert_same_weights(runs.folder("whole"), runs.folder("plain"))
    assert training_state(runs.folder("plain"))["extra"] == {}  # the training state holds nothing new without them


@pytest.mark.slow
def test_the_best_checkpoint_records_the_wandb_run(runs):
    (run_id, _), = wandb_segments(runs.folder("whole"))
    assert training_state(runs.folder("whole"), "best")["extra"][WANDB_RUN_ID] == run_id
    assert training_state(runs.folder("whole"), "latest")["extra"][WANDB_RUN_ID] == run_id


@pytest.mark.slow
def test_a_resume_from_an_earlier_epoch_purges_the_later_tensorboard_events(runs):
    folder = runs.folder("again")
    shutil.copytree(runs.folder("whole"), folder)  # finished: its events reach sample 24
    runs.train("again", "--seed", "3", "--num_threads", "0", "--continue_train", "--epoch", "1", "--tensorboard")
    events = tensorboard_events(folder)
    assert_once_per_step_in_order(steps_by_tag(events))  # samples 16-24, logged twice, are shown once
    assert_same_values(tensorboard_events(runs.folder("whole")), events)


# ----- without the packages ---------------------------------------------------------------------


@pytest.mark.parametrize("flags, package", [({"tensorboard": True, "wandb": ""}, "tensorboard"),
                                            ({"tensorboard": False, "wandb": "p"}, "wandb")])
def test_a_missing_tracker_package_is_one_line_naming_it(monkeypatch, flags, package):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError) as caught:
        require_packages(argparse.Namespace(**flags))
    assert f"needs the {package} package: pip install {package} (or, in a checkout, pip install -e " \
           f".[{package}])" in str(caught.value) and "\n" not in str(caught.value)


BLOCK_WANDB = """
import runpy, sys
sys.modules["wandb"] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_train_py_without_wandb_stops_with_one_line_before_training(tmp_path):
    hook = tmp_path / "no_wandb.py"
    hook.write_text(BLOCK_WANDB)
    runs_dir = tmp_path / "checkpoints"
    command = [sys.executable, str(hook), str(REPO_ROOT / "train.py"), "--dataroot", str(tmp_path), "--name", "x",
               "--checkpoints_dir", str(runs_dir), "--gpu_ids", "-1", "--display_id", "-1", "--wandb", "p"]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == ["error: --wandb p needs the wandb package: pip install wandb (or, "
                                                "in a checkout, pip install -e .[wandb])"]
    assert not list(runs_dir.glob("x/*.pth"))


@pytest.mark.slow
def test_wandb_without_an_account_is_one_line(tmp_path, monkeypatch):
    for variable in ("HOME", "WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path))  # no ~/.netrc, no saved login: nothing to send
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(UserError) as caught:
        WandB("p", "x", str(tmp_path), None, {})
    message = str(caught.value)
    assert message.startswith("--wandb p: ") and message.endswith("(WANDB_MODE=offline logs without an account)")
    assert "\n" not in message
