"""The training loop (training/loop.py): the loss meter behind the log lines, and a stop at a safe point."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path

import torch

from models import checkpoint
from options.model_config import create_model
from training.loop import LossMeter, stop
from training.trackers import Trackers
from util import signals


def test_losses_in_the_log_are_averaged_since_the_last_line():
    meter = LossMeter(samples_to_do=8)
    for value in (1.0, 2.0, 6.0):
        meter.add(torch.tensor([value, 2 * value]), batch=2)
    assert meter.pop_means().tolist() == [3.0, 6.0]
    meter.add(torch.tensor([5.0, 1.0]), batch=2)
    assert meter.pop_means().tolist() == [5.0, 1.0]
    assert meter.samples_done == 8 and meter.eta() == "0:00:00"


def test_ctrl_c_saves_latest_and_exits_130(make_options, tiny_dataset, capsys, no_perceptual_net):
    # What the loop does on a stop recorded by util/signals.py; drivers/test_train.py stops a real train.py with
    # SIGTERM (exit 143), whose way out this shares.
    opt = make_options("train", "--dataroot", tiny_dataset, "--name", "intr", "--ngf", "8", "--ndf", "8")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        model = create_model(opt)
    model.setup()
    progress = checkpoint.Progress(1, 2, 6, {"total": None, "steps": 0})
    code = stop(model, signals.EXIT_CODES[signal.SIGINT], 2, progress, Trackers([]))
    assert code == 130
    assert "interrupted: saving 'latest' (--continue_train resumes at sample 2 of epoch 2)" in capsys.readouterr().out
    folder = Path(opt.checkpoints_dir) / "intr"
    assert torch.load(folder / "latest_train_state.pth", weights_only=True)["epoch"] >= 1
    assert (folder / "latest_net_G_R.pth").is_file()
