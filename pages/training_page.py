"""The training page checkpoints/<name>/web/index.html: validation, loss curves (inline SVG), snapshots.

Drawn from what training leaves on disk, so it is complete whenever it is rewritten: loss_log.txt and
val_log.csv (read by util/logs.py, which writes them) and the snapshot images
web/images/epoch<NNN>_<visual>.png, newest epoch first.
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict

from dominate.tags import div, h1, h2, h3, p, section, style

from models.base_model import VisualRoles
from pages import html, svg
from util.logs import Curve, read_loss_log, read_val_log

SNAPSHOT = re.compile(r"^epoch(\d{3,})_(.+)\.png$")


def snapshots(img_dir: str) -> OrderedDict[int, dict[str, str]]:
    """Return epoch -> (visual label -> file name) of the snapshot images in img_dir, newest epoch first."""
    found: dict[int, dict[str, str]] = {}
    if os.path.isdir(img_dir):
        for name in sorted(os.listdir(img_dir)):
            match = SNAPSHOT.match(name)
            if match:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = name
    return OrderedDict(sorted(found.items(), reverse=True))


def _validation(val: Curve, roles: VisualRoles, score_cells: html.ShowScores) -> None:
    last = val.rows[-1]
    scores = {label: (last[f"PSNR_{label}"], last[f"SSIM_{label}"]) for label in roles.labels}
    p(f"Latest validation: epoch {last['epoch']:.0f}, {last['samples']:.0f} samples seen, "
      f"{last['images']:.0f} images, learning rate {last['lr']:.3g}, {last['seconds']:.1f} s. "
      "Green: the best step for PSNR and for SSIM.", cls="note")
    html.metrics_table([(f"epoch {last['epoch']:.0f}", score_cells(scores, roles.labels))], roles.labels,
                       first="validation",
                       table_id="validation")
    with div(cls="charts", id="validation-curves"):
        for metric, unit in (("PSNR", " (dB)"), ("SSIM", "")):
            svg.line_chart([svg.Series(roles.result, val.xs, val.values(f"{metric}_{roles.result}")),
                            svg.Series(f"input {roles.input}", val.xs, val.values(f"{metric}_{roles.input}"),
                                       dashed=True)],
                           f"validation {metric} of {roles.result}{unit}", "samples seen", log_y=False)


def write_training_page(web_dir: str, name: str, log_dir: str, roles: VisualRoles, score_cells: html.ShowScores,
                        thumb_width: int = 256) -> str:
    """Write web_dir/index.html from log_dir's loss_log.txt and val_log.csv and web_dir/images; return its path.

    score_cells writes the latest validation's scores as the other pages do (evaluation/reports.score_cells).
    """
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
                _validation(val, roles, score_cells)
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
                html.cascade_grid(files, roles)
                html.file_links(files)
    return html.save(doc, web_dir)
