"""The three log formats a run leaves on disk, each with its writer and its reader in one place.

- ``loss_log.txt`` (training): one line per --print_freq,
  ``(epoch: E, iters: I, samples: N, time: T, data: D) name: value ...``; read back as a Curve.
- ``val_log.csv`` (validation during training): one row per validation, columns VAL_FIXED then
  metric_columns(labels); read back as rows of text or as a Curve.
- ``metrics.csv`` (a test run): one row per image as it is scored, then the mean row.

A resumed run first cuts loss_log.txt and val_log.csv back to the point it resumes from (truncate_loss_log,
truncate_val_log), so that no row is written twice.

Metric columns are named PSNR_<label>, SSIM_<label> per score label (e.g. "I", "T_1".."T_3"; "pred" for
saved predictions; the labels come from the model's VisualRoles). This module writes the numbers it is given,
in that column order, and reads them back: what the scores are and how they are shown is evaluation/'s.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from util.files import atomic_write

VAL_FIXED = ("epoch", "samples", "lr", "seconds", "images")
LOSS_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+)(?:, samples: (\d+))?[^)]*\)(.*)$")


def metric_columns(labels: Sequence[str]) -> list[str]:
    """Return the metric column names PSNR_<label>, SSIM_<label> for each label, in order."""
    return [f"{metric}_{label}" for label in labels for metric in ("PSNR", "SSIM")]


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


# ----- loss_log.txt ----------------------------------------------------------------------------------------


class LossLog:
    """checkpoints/<name>/loss_log.txt: a header line per run start, then one line of losses per --print_freq."""

    def __init__(self, path: str):
        self.path = path

    def start(self) -> None:
        """Append the line that marks the start (or resumption) of a training run."""
        with open(self.path, "a") as f:
            f.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")

    @staticmethod
    def line(epoch: int, iters: int, losses: dict[str, float], t_comp: float, t_data: float,
             samples: int | None = None) -> str:
        """Return one loss line: iters counts samples in this epoch, samples (when given) all samples seen so far."""
        seen = "" if samples is None else f", samples: {samples}"
        message = f"(epoch: {epoch}, iters: {iters}{seen}, time: {t_comp:.3f}, data: {t_data:.3f}) "
        return message + " ".join(f"{k}: {v:.3f}" for k, v in losses.items())

    def append(self, line: str) -> None:
        """Append one line made by LossLog.line."""
        with open(self.path, "a") as f:
            f.write(line + "\n")


def truncate_loss_log(path: str, epoch: int, iters: int) -> int:
    """Cut loss_log.txt before its first loss line past sample `iters` of epoch `epoch`; return the lines cut.

    A resumed run writes the lines after that point again. Lines are compared by (epoch, iters), which every
    version of the format has; everything after the first line past the point goes (the log is in order).
    """
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.readlines()
    for number, text in enumerate(lines):
        match = LOSS_LINE.match(text.strip())
        if match and (int(match.group(1)), int(match.group(2))) > (epoch, iters):
            _rewrite(path, lines[:number])
            return len(lines) - number
    return 0


def _rewrite(path: str, lines: list[str]) -> None:
    """Replace the file at path by these lines, atomically."""
    data = "".join(lines).encode("utf-8", errors="surrogateescape")
    atomic_write(path, lambda f: f.write(data))


def read_loss_log(path: str) -> Curve:
    """Return the loss curves of a loss_log.txt (no points when it is missing).

    Without 'samples' on its lines (an older log), x is estimated as (E - 1) * (the largest I logged) + I.
    """
    parsed = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for text in f:
                match = LOSS_LINE.match(text.strip())
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


# ----- val_log.csv -----------------------------------------------------------------------------------------


def val_columns(labels: Sequence[str]) -> list[str]:
    """Return the columns of a val_log.csv whose scores have these labels."""
    return [*VAL_FIXED, *metric_columns(labels)]


def append_val_row(path: str, row: dict[str, float], labels: Sequence[str]) -> None:
    """Append one row (val_columns(labels) keys) to val_log.csv, writing the header first when the file is new."""
    columns = val_columns(labels)
    new = not os.path.isfile(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        writer.writerow([repr(row[c]) if isinstance(row[c], float) else str(row[c]) for c in columns])


def truncate_val_log(path: str, epochs_done: int) -> int:
    """Cut val_log.csv before its first row of an epoch after epochs_done (or an unreadable row); return the rows cut.

    A run resumed from epoch epochs_done validates the later epochs again.
    """
    if not os.path.isfile(path):
        return 0
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        lines = f.readlines()
    for number, text in enumerate(lines[1:], start=1):
        cells = next(csv.reader([text]), [])
        try:
            past = int(cells[0]) > epochs_done
        except (IndexError, ValueError):
            past = True  # a row cut short by a crash
        if past:
            _rewrite(path, lines[:number])
            return len(lines) - number
    return 0


def read_val_rows(path: str) -> list[dict[str, str]]:
    """Return the rows of a val_log.csv as text (empty when there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def read_val_log(path: str) -> Curve:
    """Return the rows of a val_log.csv as a curve against samples; rows not readable as numbers are left out."""
    curve = Curve()
    for record in read_val_rows(path):
        try:
            row = {column: float(value) for column, value in record.items()}
        except (TypeError, ValueError):
            continue  # a line being written
        if "samples" in row:
            curve.append(row["samples"], row)
    return curve


# ----- metrics.csv -----------------------------------------------------------------------------------------


class MetricsCSV:
    """metrics.csv written as images are scored (a crash keeps every row so far), with the mean row at the end.

    A row's values come in metric_columns(labels) order; None (no ground truth) is written as 'n/a'.
    """

    def __init__(self, path: str, labels: Sequence[str]):
        self.path = path
        self.columns = metric_columns(labels)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(["image", *self.columns])

    def add(self, name: str, values: Sequence[float | None]) -> None:
        """Append one image's row."""
        self._append(name, values)

    def finish(self, values: Sequence[float | None]) -> None:
        """Append the mean row."""
        self._append("mean", values)

    def _append(self, name: str, values: Sequence[float | None]) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for the {len(self.columns)} columns of {self.path}")
        row = [name, *("n/a" if v is None else repr(float(v)) for v in values)]
        # A file name that is not valid UTF-8 (surrogate escapes from os.fsdecode) is written with U+FFFD / '?'.
        with open(self.path, "a", newline="", encoding="utf-8", errors="replace") as f:
            csv.writer(f).writerow(row)

