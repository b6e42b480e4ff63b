"""Run the cascade on test pairs and score it: the one implementation behind test.py, validation and evaluate.py.

A test sample (the resize_natural_3 dataset in test mode) goes through ``model.test()`` (eval-mode
networks are the caller's choice), its visuals become the uint8 images that are saved, and the input I
and each step T_1..T_3 are scored against the ground truth with util/metrics.py. Scores are kept per
column label ("I", "T_1", "T_2", "T_3"; "pred" for saved predictions) as (PSNR, SSIM) pairs.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from util.errors import UserError
from util.metrics import psnr_ssim
from util.visualizer import as_images

# (column label, visual label) of what is scored against the ground truth visual GT.
STEPS = (("I", "real_I_00"), ("T_1", "fake_Ts_01"), ("T_2", "fake_Ts_02"), ("T_3", "fake_Ts_03"))
STEP_LABELS = tuple(label for label, _ in STEPS)
GT = "real_T_00"

Scores = dict[str, tuple[float, float]]


@dataclass
class ImageResult:
    """One test image: its name (file stem), input path, output images (visual label -> uint8) and scores."""

    name: str
    path: str
    images: OrderedDict[str, np.ndarray]
    scores: Scores | None  # None when the input has no ground truth


def metric_columns(labels: Sequence[str] = STEP_LABELS) -> list[str]:
    """Return the metric column names PSNR_<label>, SSIM_<label> for each label, in order."""
    return [f"{metric}_{label}" for label in labels for metric in ("PSNR", "SSIM")]


def flat(scores: Scores | None, labels: Sequence[str] = STEP_LABELS) -> list[float | None]:
    """Return the scores in metric_columns(labels) order (None everywhere without scores)."""
    if scores is None:
        return [None] * 2 * len(labels)
    return [value for label in labels for value in scores[label]]


def infer(model, data: dict, scored_only: bool = False) -> OrderedDict[str, np.ndarray]:
    """Return visual label -> uint8 image after running model.test() on one collated test sample.

    scored_only: the model may skip outputs that are not scored (IBCLN: R_3). Running out of memory (GPU or
    CPU) becomes a UserError naming the image, its size and the ways out.
    """
    model.set_input(data)
    try:
        model.test(scored_only=scored_only)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_out_of_memory(err):
            raise
        height, width = data["I"].shape[-2:]
        where = "GPU" if isinstance(err, torch.OutOfMemoryError) else "CPU"
        raise UserError(f"{data['I_path'][0]}: out of memory on this {width}x{height} image ({where}); pass "
                        "--tile 1024 (tiled inference at full resolution) or --max_size 1024 (downscale large "
                        "inputs)" + (", or use the CPU (--gpu_ids -1)" if where == "GPU" else "")) from None
    return as_images(model.get_current_visuals())


def _is_out_of_memory(err: BaseException) -> bool:
    """Return True for torch's out-of-memory errors: CUDA's type, and the CPU allocator's RuntimeError."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    message = str(err)
    return "DefaultCPUAllocator" in message or "not enough memory" in message or "can't allocate memory" in message


def score_steps(images: OrderedDict[str, np.ndarray], protocol: str = "bandwise") -> Scores:
    """Return label -> (PSNR, SSIM) of I and T_1..T_3 against the ground truth image."""
    return {label: psnr_ssim(images[visual], images[GT], protocol) for label, visual in STEPS}


def run_test_set(model, dataset: Dataset, limit: float = math.inf, protocol: str = "bandwise",
                 skip_bad: bool = False, skipped: list[str] | None = None, scored_only: bool = False
                 ) -> Iterator[ImageResult]:
    """Yield an ImageResult for each of the first `limit` test samples, in the dataset's (sorted) order.

    A sample that cannot be decoded raises its UserError, or with skip_bad is skipped with one warning and
    its message appended to `skipped`. scored_only (validation): outputs that are not scored may be missing
    from the images (IBCLN's R_3); the scores are those of a full run.
    """
    for index in range(int(min(limit, len(dataset)))):
        try:
            data = default_collate([dataset[index]])
        except UserError as err:
            if not skip_bad:
                raise
            warnings.warn(f"skipped: {err}", stacklevel=2)
            if skipped is not None:
                skipped.append(str(err))
            continue
        images = infer(model, data, scored_only)
        path = data["I_path"][0]
        scores = score_steps(images, protocol) if bool(data["has_gt"][0]) else None
        name = data["name"][0] if "name" in data else os.path.splitext(os.path.basename(path))[0]
        yield ImageResult(name, path, images, scores)


def mean_scores(all_scores: Sequence[Scores | None]) -> Scores | None:
    """Return label -> mean (PSNR, SSIM) over the images that have scores (None when none has)."""
    scored = [s for s in all_scores if s is not None]
    if not scored:
        return None
    return {label: (float(np.mean([s[label][0] for s in scored])), float(np.mean([s[label][1] for s in scored])))
            for label in scored[0]}


def weighted_mean(parts: Sequence[tuple[int, Scores]]) -> Scores:
    """Return the image-weighted mean of per-set mean scores, given (number of images, mean scores) pairs."""
    total = sum(n for n, _ in parts)
    labels = parts[0][1].keys()
    return {label: (sum(n * s[label][0] for n, s in parts) / total, sum(n * s[label][1] for n, s in parts) / total)
            for label in labels}


def fmt(value: float | None, digits: int) -> str:
    """Return value with the given decimals, or 'n/a'."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_cells(scores: Scores | None, labels: Sequence[str] = STEP_LABELS) -> list[str]:
    """Return metric cells in metric_columns order: PSNR with 2 decimals, SSIM with 4, 'n/a' without scores."""
    return [fmt(v, 2 if i % 2 == 0 else 4) for i, v in enumerate(flat(scores, labels))]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return rows under header as right-aligned text columns for the console."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return "\n".join("  ".join(str(cell).rjust(w) for cell, w in zip(r, widths)) for r in [header, *rows])


class MetricsCSV:
    """metrics.csv written as images are scored (a crash keeps every row so far), with the mean row at the end."""

    def __init__(self, path: str, labels: Sequence[str] = STEP_LABELS):
        self.path = path
        self.labels = labels
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(["image", *metric_columns(labels)])

    def add(self, name: str, scores: Scores | None) -> None:
        """Append one image's row ('n/a' without ground truth)."""
        self._append([name, *("n/a" if v is None else repr(float(v)) for v in flat(scores, self.labels))])

    def finish(self, mean: Scores | None) -> None:
        """Append the mean row."""
        self._append(["mean", *("n/a" if v is None else repr(float(v)) for v in flat(mean, self.labels))])

    def _append(self, row: list[str]) -> None:
        # A file name that is not valid UTF-8 (surrogate escapes from os.fsdecode) is written with U+FFFD / '?'.
        with open(self.path, "a", newline="", encoding="utf-8", errors="replace") as f:
            csv.writer(f).writerow(row)
