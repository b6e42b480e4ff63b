"""What training shows: visdom (image grid of the cascade, loss and validation curves), snapshots and the
training page, and the loss lines of loss_log.txt (util/logs.py owns that format)."""

from __future__ import annotations

import argparse
import os
import warnings
from collections import OrderedDict

import numpy as np

from models.base_model import VisualRoles
from pages.html import ShowScores
from pages.training_page import write_training_page
from util.images import as_images, flatten_visuals, save_image, tensor2im
from util.logs import LossLog, truncate_loss_log


def _visuals_grid(visuals: OrderedDict) -> tuple[list[np.ndarray], int]:
    """Return the images of visuals as rows (a cascade per row, single images together) and the row width."""
    rows: list[list[np.ndarray]] = []
    singles: list[np.ndarray] = []
    for value in visuals.values():
        if isinstance(value, (list, tuple)):
            rows.append([tensor2im(v) for v in value])
        else:
            singles.append(tensor2im(value))
    if singles:
        rows.append(singles)
    ncols = max(len(r) for r in rows)
    blank = np.full_like(rows[0][0], 255)
    images = []
    for row in rows:
        images += row + [blank] * (ncols - len(row))
    return images, ncols


def page_grid(visuals: OrderedDict, roles: VisualRoles, gap: int = 2) -> np.ndarray:
    """Return the visuals as one (H, W, 3) uint8 image laid out as the result page's grid (the rows of roles,
    then any other visual), empty cells and gaps white; the hidden visuals of roles are left out."""
    images = as_images(visuals)
    placed = set(roles.hidden)
    rows: list[list[np.ndarray | None]] = []
    for row in roles.rows:
        cells = [images[cell[0]] if cell and cell[0] in images and cell[0] not in placed else None for cell in row]
        placed |= {cell[0] for cell in row if cell}
        if any(cell is not None for cell in cells):
            rows.append(cells)
    others = [image for label, image in images.items() if label not in placed]
    if others:
        rows.append(others)
    shown = [image for row in rows for image in row if image is not None]
    height, width = max(im.shape[0] for im in shown), max(im.shape[1] for im in shown)
    ncols = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + gap) - gap, ncols * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is not None:
                top, left = r * (height + gap), c * (width + gap)
                grid[top:top + image.shape[0], left:left + image.shape[1]] = image
    return grid


class Visualizer:
    """Shows and saves what training produces; visdom only when --display_id > 0 and a server answers."""

    def __init__(self, opt: argparse.Namespace, roles: VisualRoles, score_cells: ShowScores, enabled: bool = True,
                 resume_at: tuple[int, int] | None = None):
        """score_cells: how the training page writes validation scores (evaluation/reports.score_cells);
        resume_at: (epoch, sample in that epoch) a resumed run continues from; later loss lines are dropped."""
        self.opt = opt
        self.roles = roles
        self.score_cells = score_cells
        self.enabled = enabled  # False on DDP ranks other than 0
        self.display_id = opt.display_id if enabled else 0
        self.use_html = enabled and opt.is_train and not opt.no_html
        self.win_size = opt.display_winsize
        self.name = opt.name
        self.saved = False
        self.vis = None
        self.plot_data: dict = {"X": [], "Y": [], "legend": []}
        self.val_data: dict = {"X": [], "Y": []}
        if self.display_id > 0:
            self.vis = connect_visdom(opt.display_server, opt.display_port, opt.display_env)
            if self.vis is None:
                self.display_id = 0
        if self.use_html:
            self.web_dir = os.path.join(opt.checkpoints_dir, opt.name, "web")
            self.img_dir = os.path.join(self.web_dir, "images")
            os.makedirs(self.img_dir, exist_ok=True)
        self.log_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.loss_log = LossLog(os.path.join(self.log_dir, "loss_log.txt"))
        if enabled and resume_at is not None:
            dropped = truncate_loss_log(self.loss_log.path, *resume_at)
            if dropped:
                print(f"{self.loss_log.path}: {dropped} line(s) after sample {resume_at[1]} of epoch {resume_at[0]} "
                      "dropped (trained again)")
        if enabled:
            self.loss_log.start()

    def reset(self) -> None:
        """Allow the next display_current_results to write an HTML snapshot."""
        self.saved = False

    def _visdom_call(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # a server that went away must not stop training
            warnings.warn(f"visdom display failed ({err}); continuing without it", stacklevel=3)
            self.display_id = 0
            self.vis = None

    def display_current_results(self, visuals: OrderedDict, epoch: int, save_result: bool) -> None:
        """Show the cascade in visdom and, when save_result, add it to the HTML snapshot page."""
        if not self.enabled:
            return
        if self.display_id > 0 and self.vis is not None:
            images, ncols = _visuals_grid(visuals)
            array = np.stack([im.transpose(2, 0, 1) for im in images])
            self._visdom_call(self.vis.images, array, nrow=ncols, win=self.display_id, padding=2,
                              opts={"title": f"{self.name} images (a row per cascade, then the single images)"})
        if self.use_html and (save_result or not self.saved):
            self.saved = True
            flat = flatten_visuals(visuals)
            for label, image in flat.items():
                save_image(tensor2im(image), os.path.join(self.img_dir, f"epoch{epoch:03d}_{label}.png"))
            self.write_training_page()

    def write_training_page(self) -> str | None:
        """Rewrite web/index.html (validation, loss curves, snapshots) and return its path; None without HTML."""
        if not self.use_html:
            return None
        return write_training_page(self.web_dir, self.name, self.log_dir, self.roles, self.score_cells, self.win_size)

    def plot_current_losses(self, epoch: int, counter_ratio: float, losses: OrderedDict) -> None:
        """Append the losses to the visdom line plot (x = epoch + fraction of the epoch done)."""
        if not self.enabled or self.display_id <= 0 or self.vis is None:
            return
        if not self.plot_data["legend"]:
            self.plot_data["legend"] = list(losses)
        self.plot_data["X"].append(epoch + counter_ratio)
        self.plot_data["Y"].append([losses[k] for k in self.plot_data["legend"]])
        legend = self.plot_data["legend"]
        x = np.tile(np.array(self.plot_data["X"])[:, None], (1, len(legend)))
        y = np.array(self.plot_data["Y"])
        self._visdom_call(self.vis.line, X=x, Y=y, win=self.display_id + 1,
                          opts={"title": f"{self.name} loss over time", "legend": legend,
                                "xlabel": "epoch", "ylabel": "loss"})

    def plot_validation(self, epoch: int, psnr: float) -> None:
        """Append the validation PSNR of the result to its visdom line plot (the window after the loss plot)."""
        if not self.enabled or self.display_id <= 0 or self.vis is None:
            return
        self.val_data["X"].append(epoch)
        self.val_data["Y"].append(psnr)
        self._visdom_call(self.vis.line, X=np.array(self.val_data["X"]), Y=np.array(self.val_data["Y"]),
                          win=self.display_id + 2, opts={"title": f"{self.name} validation {self.roles.result} PSNR",
                                                         "xlabel": "epoch", "ylabel": "PSNR (dB)"})

    def print_current_losses(self, epoch: int, iters: int, losses: OrderedDict, t_comp: float,
                             t_data: float, samples: int | None = None) -> str:
        """Append one line of losses to loss_log.txt and return it (the progress bar shows it).

        iters counts samples in this epoch, samples (when given) all samples seen so far: the training page's x.
        """
        message = LossLog.line(epoch, iters, losses, t_comp, t_data, samples)
        if self.enabled:
            self.loss_log.append(message)
        return message


def connect_visdom(server: str, port: int, env: str):
    """Return a connected visdom client, or None after one warning when no server answers (never starts one)."""
    try:
        import visdom
    except ImportError:
        warnings.warn("visdom is not installed: training continues without display (--display_id -1 hides "
                      "this warning)", stacklevel=2)
        return None
    try:
        vis = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True,
                            use_incoming_socket=False)
        connected = vis.check_connection(timeout_seconds=3)
    except Exception:
        connected = False
    if not connected:
        warnings.warn(f"no visdom server at {server}:{port}: training continues without display. Start one "
                      "(see docs/training.md, 'Watching training') or pass --display_id -1", stacklevel=2)
        return None
    return vis

