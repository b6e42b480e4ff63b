"""The training page checkpoints/<name>/web/index.html: validation, loss curves (inline SVG), snapshots.

Drawn from what training leaves on disk, so it is complete whenever it is rewritten: loss_log.txt
(util/visualizer.print_current_losses), val_log.csv (validation during training) and the snapshot
images web/images/epoch<NNN>_<visual>.png, newest epoch first.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from dominate.tags import div, h1, h2, h3, p, section, style

from util import html, svg
from util.evaluation import STEP_LABELS, metric_columns

LOSS_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+)(?:, samples: (\d+))?[^)]*\)(.*)$")
VAL_COLUMNS = ("epoch", "samples", "lr", "seconds", "images", *metric_columns(STEP_LABELS))
SNAPSHOT = re.compile(r"^epoch(\d{3,})_(.+)\.png$")


@dataclass
class Curve:
    """Points of a log in the order they were written: x = samples seen, and a value per name per point."""

    names: list[str] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    guessed: list[bool] = field(default_factory=list)  # x estimated from epoch and iters (an older loss log)

    def append(self, x: float, row: dict[str, float], guessed: bool = False) -> None:
        """Add a point; a point at or before earlier ones (training restarted or resumed) replaces them."""
        while self.xs and self.xs[-1] >= x:
            self.xs.pop()
            self.rows.pop()
            self.guessed.pop()
        self.xs.append(x)
        self.rows.append(row)
        self.guessed.append(guessed)
        self.names += [name for name in row if name not in self.names]

    def values(self, name: str) -> list[float]:
        """Return the values of name at each point (NaN where a point lacks it)."""
        return [row.get(name, float("nan")) for row in self.rows]


def read_loss_log(path: str) -> Curve:
    """Return the loss curves of loss_log.txt (no points when it is missing).

    Lines read '(epoch: E, iters: I[, samples: N], time: .., data: ..) name: value ...'. Without
    'samples', x is estimated as (E - 1) * (the largest I logged) + I.
    """
    parsed = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                match = LOSS_LINE.match(line.strip())
                if not match:
                    continue
                losses = {}
                for name, value in re.findall(r"(\S+): (\S+)", match.group(4)):
                    try:
                        losses[name] = float(value)
                    except ValueError:
                        continue
                parsed.append((int(match.group(1)), int(match.group(2)), match.group(3), losses))
    curve = Curve()
    per_epoch = max((iters for _, iters, _, _ in parsed), default=0)
    for epoch, iters, samples, losses in parsed:
        if samples is None:
            curve.append((epoch - 1) * per_epoch + iters, losses, guessed=True)
        else:
            curve.append(int(samples), losses)
    return curve


def read_val_log(path: str) -> Curve:
    """Return the rows of val_log.csv as a curve against samples (no points when it is missing).

    Rows that cannot be read as numbers (a line being written) are left out.
    """
    curve = Curve()
    if not os.path.isfile(path):
        return curve
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for record in csv.DictReader(f):
            try:
                row = {column: float(record[column]) for column in VAL_COLUMNS}
            except (KeyError, TypeError, ValueError):
                continue
            curve.append(row["samples"], row)
    return curve


def snapshots(img_dir: str) -> OrderedDict[int, dict[str, str]]:
    """Return epoch -> (visual label -> file name) of the snapshot images in img_dir, newest epoch first."""
    found: dict[int, dict[str, str]] = {}
    if os.path.isdir(img_dir):
        for name in sorted(os.listdir(img_dir)):
            match = SNAPSHOT.match(name)
            if match:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = name
    return OrderedDict(sorted(found.items(), reverse=True))


def _validation(val: Curve) -> None:
    last = val.rows[-1]
    scores = {label: (last[f"PSNR_{label}"], last[f"SSIM_{label}"]) for label in STEP_LABELS}
    p(f"Latest validation: epoch {last['epoch']:.0f}, {last['samples']:.0f} samples seen, "
      f"{last['images']:.0f} images, learning rate {last['lr']:.3g}, {last['seconds']:.1f} s. "
      "Green: the best step for PSNR and for SSIM.", cls="note")
    html.metrics_table([(f"epoch {last['epoch']:.0f}", scores)], STEP_LABELS, first="validation",
                       table_id="validation")
    with div(cls="charts", id="validation-curves"):
        for metric, unit in (("PSNR", " (dB)"), ("SSIM", "")):
            svg.line_chart([svg.Series("T_3", val.xs, val.values(f"{metric}_T_3")),
                            svg.Series("input I", val.xs, val.values(f"{metric}_I"), dashed=True)],
                           f"validation {metric} of T_3{unit}", "samples seen", log_y=False)


def write_training_page(web_dir: str, name: str, log_dir: str, thumb_width: int = 256) -> str:
    """Write web_dir/index.html from log_dir's loss_log.txt and val_log.csv and web_dir/images; return its path."""
    losses = read_loss_log(os.path.join(log_dir, "loss_log.txt"))
    val = read_val_log(os.path.join(log_dir, "val_log.csv"))
    doc = html.new_page(f"Training: {name}")
    doc.head.add(style(f".grid img {{ max-width: {int(thumb_width)}px; }}"))
    with doc:
        h1(f"Training: {html.shown(name)}")
        p(f"Page written {time.strftime('%Y-%m-%d %H:%M:%S')}; it is rewritten at each snapshot and at the end of "
          "each epoch. Curves are drawn against the number of training samples seen.", cls="note")
        if val.rows:
            with section(id="validation"):
                h2("Validation")
                _validation(val)
        with section(id="losses"):
            h2("Training losses")
            if losses.rows:
                note = f"{len(losses.rows)} logged points (loss_log.txt); a log y axis where values span 20x or more."
                if any(losses.guessed):
                    note += " Samples are estimated from epoch and iteration (an older log without 'samples')."
                p(note, cls="note")
                with div(cls="charts", id="loss-curves"):
                    for loss in losses.names:
                        svg.line_chart([svg.Series(loss, losses.xs, losses.values(loss))], f"loss {loss}",
                                       "samples seen")
            else:
                p("No losses logged yet.", cls="note")
        with section(id="snapshots"):
            h2("Snapshots of the cascade (newest first; T_k above R_k, from a training batch)")
            for epoch, files in snapshots(os.path.join(web_dir, "images")).items():
                h3(f"epoch {epoch}")
                html.cascade_grid(files)
                html.file_links(files)
    return html.save(doc, web_dir)
