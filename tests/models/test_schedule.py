"""The learning-rate schedule: --lr_policy plateau follows the validation metric, and resumes exactly."""

from __future__ import annotations

import warnings

import pytest
from helpers import build_tiny_dataset

from models import IBCLNConfig, IBCLNModel, checkpoint
from util.errors import UserError

pytestmark = pytest.mark.usefixtures("no_perceptual_net")  # the schedule never runs the perceptual loss

PATIENCE = 5  # validations without a 1% rise before the plateau policy lowers the lr (models/schedule.py)


def plateau_model(tmp_path, name: str = "plateau"):
    """Return a training IBCLNModel with the plateau policy (set up: schedulers made, nothing loaded)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        model = IBCLNModel(IBCLNConfig(is_train=True, lr_policy="plateau", ngf=4, ndf=4, vgg_weights="random",
                                       checkpoints_dir=str(tmp_path / "checkpoints"), name=name))
    model.setup()
    return model


def lrs(model) -> list[float]:
    """Return the learning rate of each optimiser."""
    return [o.param_groups[0]["lr"] for o in model.optimizers]


def test_plateau_needs_a_validation_set(tmp_path, make_options):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    with pytest.raises(UserError, match="--lr_policy plateau .* needs --val_dataroot"):
        make_options("train", "--dataroot", root, "--lr_policy", "plateau")


def test_plateau_lowers_the_lr_when_the_metric_stalls(tmp_path):
    model = plateau_model(tmp_path)
    start = lrs(model)
    model.update_learning_rate(20.0)
    for _ in range(PATIENCE):
        model.update_learning_rate(20.05)  # below a 1% rise over the best
        assert model.update_learning_rate() == start[0]  # epoch ends alone never step the plateau policy
    assert lrs(model) == start
    model.update_learning_rate(20.0)  # the sixth validation without a rise
    assert lrs(model) == pytest.approx([0.2 * lr for lr in start])


def test_plateau_keeps_the_lr_while_the_metric_rises(tmp_path):
    model = plateau_model(tmp_path)
    start = lrs(model)
    for k in range(3 * PATIENCE):
        model.update_learning_rate(20.0 + 0.5 * k)
    model.update_learning_rate(float("nan"))  # no image could be scored: no step
    assert lrs(model) == start


def test_plateau_state_resumes_exactly(tmp_path):
    metrics = [20.0, 21.0, 20.5, 20.9, 20.8, 20.7]
    uninterrupted = plateau_model(tmp_path, "whole")
    for value in metrics + [20.6, 20.5]:
        uninterrupted.update_learning_rate(value)
    first = plateau_model(tmp_path, "first")
    for value in metrics:
        first.update_learning_rate(value)
    checkpoint.save(first, "latest", len(metrics), 0)
    resumed = plateau_model(tmp_path, "first")
    checkpoint.load_training_state(resumed, "latest")
    assert lrs(resumed) == lrs(first)
    for value in [20.6, 20.5]:  # 6 validations after the best (21.0): the drop comes at the last one
        resumed.update_learning_rate(value)
    assert lrs(resumed) == lrs(uninterrupted) == pytest.approx([0.2 * 2e-4] * 2)
