"""Run the cascade on test pairs and score it: the one implementation behind test.py, validation and evaluate.py.

A test sample (a dataset in test mode, found by --dataset_mode) goes through ``model.test()`` (eval-mode
networks are the caller's choice), its visuals become the uint8 images that are saved, and every step the
model's VisualRoles name (IBCLN: the input I and T_1..T_3) is scored against the ground truth with
evaluation/metrics.py. Scores are kept per score label as (PSNR, SSIM) pairs (Scores); flat lays them out
in the metric columns of the logs (util/logs.metric_columns).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from evaluation.metrics import psnr_ssim
from models.base_model import VisualRoles
from util.errors import UserError
from util.images import as_images

Scores = dict[str, tuple[float, float]]  # score label -> (PSNR in dB, SSIM)


def flat(scores: Scores | None, labels: Sequence[str]) -> list[float | None]:
    """Return the scores in util/logs.metric_columns(labels) order (None everywhere without scores)."""
    if scores is None:
        return [None] * 2 * len(labels)
    return [value for label in labels for value in scores[label]]


@dataclass
class ImageResult:
    """One test image: its name (file stem), input path, output images (visual label -> uint8), scores, ground
    truth path ('' without one) and, once saved by a test run, the digest of its files (data/fingerprint.py)."""

    name: str
    path: str
    images: OrderedDict[str, np.ndarray]
    scores: Scores | None  # None when the input has no ground truth
    gt_path: str = ""
    digest: str = ""


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


def score_steps(images: OrderedDict[str, np.ndarray], roles: VisualRoles, protocol: str = "bandwise") -> Scores:
    """Return score label -> (PSNR, SSIM) of every step of roles against the ground truth image."""
    return {label: psnr_ssim(images[visual], images[roles.ground_truth], protocol) for label, visual in roles.steps}


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
        scores = score_steps(images, model.roles, protocol) if bool(data["has_gt"][0]) else None
        name = data["name"][0] if "name" in data else os.path.splitext(os.path.basename(path))[0]
        yield ImageResult(name, path, images, scores, data["T_path"][0] if scores is not None else "")


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


def spread(runs: Sequence[Scores]) -> tuple[Scores, Scores]:
    """Return (mean, sample standard deviation with n-1) over runs of each label's PSNR and SSIM (2 runs or more).

    An infinite value in a column gives an infinite mean and an undefined (NaN) deviation.
    """
    labels = runs[0].keys()
    values = {label: np.array([run[label] for run in runs], dtype=np.float64) for label in labels}  # (runs, 2)
    with np.errstate(invalid="ignore"):  # inf - inf in the deviation: NaN is the answer
        mean = {label: tuple(float(v) for v in np.mean(values[label], axis=0)) for label in labels}
        std = {label: tuple(float(v) for v in np.std(values[label], axis=0, ddof=1)) for label in labels}
    return mean, std
