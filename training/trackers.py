"""Experiment trackers: TensorBoard (--tensorboard) and Weights & Biases (--wandb PROJECT), behind one interface.

Both get the same values from the training loop (training/loop.py), on rank 0 only:

- at every --print_freq line, the losses averaged since the previous line (``loss/<name>``, the values of
  loss_log.txt), the learning rate (``lr``) and the samples per second of all processes together since the
  previous line (``samples_per_s``);
- after every validation, the mean PSNR and SSIM of every cascade step (``val/PSNR_<label>``,
  ``val/SSIM_<label>``, the columns of val_log.csv);
- at every --display_freq, the cascade of a training batch laid out as the result page's grid
  (``images/cascade``).

The step axis is the samples seen, the ``samples`` of loss_log.txt's lines (under torchrun, those of one
process). A resumed run continues the same logs: TensorBoard purges every event after the step it resumes
from (SummaryWriter's purge_step), and W&B resumes the run whose id the training state records (extra
``wandb_run_id``). Both packages are optional (pyproject.toml's extras); asking for a missing one is a
UserError naming it. docs/training.md, 'Watching training', says how to use them.
"""

from __future__ import annotations

import argparse
import atexit
import os
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from evaluation.scoring import flat
from evaluation.validation import ValResult
from util.errors import UserError
from util.logs import metric_columns

WANDB_RUN_ID = "wandb_run_id"  # the training state's extra that names the W&B run
GRID_TAG = "images/cascade"


class Tracker(Protocol):
    """One experiment tracker."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record the values (tag -> number) at step."""

    def images(self, step: int, grid: np.ndarray) -> None:
        """Record an (H, W, 3) uint8 image at step."""

    def state(self) -> dict:
        """Return what the training state keeps so that a resumed run continues this tracker's log."""

    def close(self) -> None:
        """Write out what is pending and let the tracker go."""


def require_packages(opt: argparse.Namespace) -> None:
    """Import the packages the asked-for trackers need; a missing one is a UserError naming it and its install."""
    wanted = [("--tensorboard", "tensorboard", "torch.utils.tensorboard")] if opt.tensorboard else []
    wanted += [(f"--wandb {opt.wandb}", "wandb", "wandb")] if opt.wandb else []
    for flag, package, module in wanted:
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"{flag} needs the {package} package: pip install {package} (or, in a checkout, "
                            f"pip install -e .[{package}])") from None


class TensorBoard:
    """Event files in checkpoints/<name>/tensorboard/ (torch.utils.tensorboard)."""

    def __init__(self, log_dir: str, purge_step: int):
        """purge_step: events at this step and later, left by an earlier start of the run, are dropped."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir, purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Add one scalar event per value at step."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def images(self, step: int, grid: np.ndarray) -> None:
        """Add the grid as an image event at step."""
        self.writer.add_image(GRID_TAG, grid, step, dataformats="HWC")

    def state(self) -> dict:
        """Return {}: the event files and the resumed step are all a resume needs."""
        return {}

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class WandB:
    """A W&B run in project, its local files in <run_dir>/wandb/ (online, or offline with WANDB_MODE=offline)."""

    def __init__(self, project: str, name: str, run_dir: str, run_id: str | None, config: dict):
        """run_id: the run to continue (from the training state), None for a new one."""
        import wandb

        self.wandb = wandb
        try:
            self.run = wandb.init(project=project, name=name, id=run_id, resume="allow", dir=run_dir,
                                  config=config)
        except wandb.Error as err:  # no account configured, a bad project name, ...
            raise UserError(f"--wandb {project}: {err} (WANDB_MODE=offline logs without an account)") from None

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log the values at step (several calls at one step make one history row)."""
        self.run.log(dict(values), step=step)

    def images(self, step: int, grid: np.ndarray) -> None:
        """Log the grid as an image at step."""
        self.run.log({GRID_TAG: self.wandb.Image(grid)}, step=step)

    def state(self) -> dict:
        """Return the run's id, which a resumed run continues."""
        return {WANDB_RUN_ID: self.run.id}

    def close(self) -> None:
        """Finish the run (its files are complete; online, the upload ends)."""
        self.run.finish()


class Trackers:
    """The trackers of a run (none, one or both); each call goes to every one, with the tags named here."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers
        if trackers:
            atexit.register(self.close)  # also on an error's way out, which skips the loop's own close

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def losses(self, step: int, means: Mapping[str, float], lr: float, samples_per_s: float) -> None:
        """Record a --print_freq line: the mean losses, the learning rate and the throughput."""
        values = {f"loss/{name}": value for name, value in means.items()}
        self._scalars(step, {**values, "lr": lr, "samples_per_s": samples_per_s})

    def validation(self, step: int, result: ValResult, labels: tuple[str, ...]) -> None:
        """Record a validation's mean PSNR and SSIM of every step (nothing when it scored no image)."""
        if result.scores is not None:
            self._scalars(step, {f"val/{column}": float(value)
                                 for column, value in zip(metric_columns(labels), flat(result.scores, labels))})

    def images(self, step: int, grid: np.ndarray) -> None:
        """Record the cascade grid (pages.display.page_grid)."""
        for tracker in self.trackers:
            tracker.images(step, grid)

    def state(self) -> dict:
        """Return what every tracker needs kept in the training state (the W&B run id)."""
        return {key: value for tracker in self.trackers for key, value in tracker.state().items()}

    def close(self) -> None:
        """Close every tracker (once)."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close()
        atexit.unregister(self.close)

    def _scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tracker in self.trackers:
            tracker.scalars(step, values)


def open_trackers(opt: argparse.Namespace, enabled: bool, resume_step: int | None, saved: dict) -> Trackers:
    """Return the trackers the options ask for (none when not enabled: ranks other than 0).

    resume_step: the samples seen at the checkpoint a resumed run starts from (None: a new run, whose logs
    start afresh); saved: that checkpoint's training-state extra (the W&B run id).
    """
    if not enabled:
        return Trackers([])
    run_dir = os.path.join(opt.checkpoints_dir, opt.name)
    trackers: list[Tracker] = []
    if opt.tensorboard:
        # Purged from the first step after the resumed point: that is where the resumed run logs again.
        trackers.append(TensorBoard(os.path.join(run_dir, "tensorboard"),
                                    purge_step=0 if resume_step is None else resume_step + 1))
    if opt.wandb:
        run_id = saved.get(WANDB_RUN_ID) if resume_step is not None else None
        if resume_step is not None and run_id is None:
            print("note: the checkpoint resumed records no W&B run: --wandb starts a new one")
        trackers.append(WandB(opt.wandb, opt.name, run_dir, run_id, dict(vars(opt))))
    return Trackers(trackers)
