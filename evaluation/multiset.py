"""Evaluation like the paper's: several test sets in one run, for one or several checkpoints or for saved predictions.

    python evaluate.py --name IBCLN --epoch final --sets objects=DIR postcard=DIR wild=DIR real20=DIR nature=DIR
    python evaluate.py --name IBCLN --epoch 60 70 80 final --sets nature=DIR       # the spread over checkpoints
    python evaluate.py --sets nature=DIR --pred OUTPUTS_DIR [--pred_suffix _fake_Ts_03] [--pred_resize]

Each DIR may be in any layout of data/layouts.py, opened through --dataset_mode as test.py opens its set.
With a checkpoint, every set runs through evaluation/testing.test_model (the same inference, metrics, images,
metrics.csv and page as test.py, under results/<name>/eval_<epoch>/<set>/), the model built once per
checkpoint; every --name is evaluated at every --epoch. With --pred, saved predictions are scored against
each set's ground truth at the ground truth's size, or at the aligned size with --align (no network, no
device). Prints the protocol, each set's fingerprint (data/fingerprint.py) and a Markdown table (one row per
set, then the image-weighted average; with several checkpoints one row per checkpoint and the mean ± sample
standard deviation), writes --json and an index.html linking every set's page. The tables and the JSON are
evaluation/reports.py's, the summary pages pages/evaluation_page.py's, --sets and --pred are read by
options/evaluate_options.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
from collections import OrderedDict

import numpy as np
from PIL import Image

from data import open_test_set
from data.base_dataset import align_down
from data.image_folder import load_rgb, make_dataset
from data.layouts import Pair
from data.pairing import few, index_by_name, stem
from data.size_policy import describe_prediction_size, size_policy_name
from evaluation.metrics import describe_protocol, psnr_ssim
from evaluation.reports import (
    MEAN_ROW,
    SPREAD,
    Run,
    SetResult,
    as_json,
    score_cells,
    set_fingerprints,
    sets_line,
    sets_markdown,
    spread_markdown,
    spread_rows,
    with_average,
)
from evaluation.scoring import Scores, mean_scores
from evaluation.testing import ResultWriter, load_test_model, protocol_line, test_model
from models.base_model import VisualRoles
from options.evaluate_options import AVERAGE, evaluation_folder, parse_pred, parse_sets
from options.test_options import results_folder
from pages.evaluation_page import write_runs_page, write_sets_page
from util.errors import UserError
from util.logs import metric_columns

# Saved predictions: the input and the prediction are scored against the ground truth.
PRED_ROLES = VisualRoles(
    steps=(("I", "input"), ("pred", "pred")), ground_truth="gt", input="I", result="pred",
    rows=((("input", "input I", "I"), ("pred", "prediction", "pred"), ("gt", "ground truth", None)),))


def _note_skipped(set_name: str, names: list[str]) -> None:
    if names:
        print(f"note: {set_name}: {len(names)} input(s) without ground truth are skipped: {few(names)}")


# ----- checkpoints ------------------------------------------------------------------------------------------


def open_sets(opt: argparse.Namespace, sets: dict[str, str]) -> dict[str, tuple[argparse.Namespace, object]]:
    """Return set name -> (its options, its test dataset holding only inputs with a ground truth)."""
    prepared = {}
    for name, root in sets.items():  # every set is checked before anything runs
        set_opt = copy.copy(opt)
        set_opt.dataroot = root
        dataset = open_test_set(set_opt)
        _note_skipped(name, dataset.only_with_ground_truth())
        if len(dataset) == 0:
            raise UserError(f"--sets {name}={root}: no input has a ground truth ({dataset.layout} layout): "
                            "nothing to evaluate")
        prepared[name] = (set_opt, dataset)
    return prepared


def run_label(name: str, epoch: str, load_iter: int = 0, ema: bool = False) -> str:
    """Return how tables name a checkpoint: <name>@<epoch> (or @iter<n> with --load_iter), + _ema for its EMA."""
    return (f"{name}@iter{load_iter}" if load_iter > 0 else f"{name}@{epoch}") + ("_ema" if ema else "")


def evaluate_checkpoint(opt: argparse.Namespace, name: str, epoch: str, prepared: dict) -> tuple[Run, VisualRoles]:
    """Return the Run of checkpoint (name, epoch) on every set and the model's roles; the model is built once."""
    run_opt = argparse.Namespace(**{**vars(opt), "name": name, "epoch": epoch})
    folder = results_folder(run_opt)
    model = load_test_model(run_opt)
    results, digests = {}, {}
    for set_name, (set_opt, dataset) in prepared.items():
        print(f"set {set_name}: {len(dataset)} image(s) from {set_opt.dataroot} ({dataset.layout} layout), "
              f"checkpoint {run_label(name, epoch, opt.load_iter, opt.ema)}")
        set_opt = argparse.Namespace(**{**vars(set_opt), "name": name, "epoch": epoch})
        scored = [r for r in test_model(set_opt, model, dataset, os.path.join(folder, set_name))
                  if r.scores is not None]
        results[set_name] = _set_result(set_name, [(r.name, r.scores) for r in scored])
        digests[set_name] = [r.digest for r in scored]
    return Run(run_label(name, epoch, opt.load_iter, opt.ema), folder, results, digests), model.roles


def _set_result(name: str, scored: list[tuple[str, Scores]]) -> SetResult:
    """Return (images, mean scores) of a set's (image name, scores); notes images whose PSNR is infinite."""
    mean = mean_scores([scores for _, scores in scored])
    if mean is None:
        raise UserError(f"set {name}: no image could be scored")
    infinite = [image for image, scores in scored if any(math.isinf(ps) for ps, _ in scores.values())]
    if infinite:
        print(f"note: {name}: {len(infinite)} image(s) have a channel identical to the ground truth, so an "
              f"infinite band-wise PSNR, and the set's mean PSNR of that column is infinite: {few(infinite)}")
    return len(scored), mean


# ----- saved predictions ------------------------------------------------------------------------------------


def prediction_files(folder: str, suffix: str) -> dict[str, str]:
    """Return name -> path of the images in folder whose stem ends with suffix (removed); duplicates are an error."""
    paths = [p for p in make_dataset(folder) if stem(p).endswith(suffix) and stem(p) != suffix]
    return index_by_name(paths, folder, lambda p: stem(p)[: len(stem(p)) - len(suffix)],
                         "each is a prediction for that image: keep one")


def _match(pairs: list[Pair], preds: dict[str, str], set_name: str, folder: str, suffix: str) -> list[str]:
    """Return the prediction path of each pair (by its name, else its input's stem); missing ones are an error."""
    matched, missing = [], []
    for pair in pairs:
        path = preds.get(pair.name) or preds.get(stem(pair.input))
        matched.append(path)
        if path is None:
            missing.append(pair.name)
    if missing:
        hint = f" (no image file there ends with --pred_suffix '{suffix}')" if suffix and not preds else ""
        raise UserError(f"--pred {set_name}: {folder} has no prediction for {len(missing)} of {len(pairs)} "
                        f"image(s): {few(missing)}{hint}")
    return matched


def _load_prediction(path: str, size: tuple[int, int], resize: bool, gt_path: str,
                     align: int) -> tuple[np.ndarray, bool]:
    """Return (the prediction as uint8 RGB at size, whether it was resized); another size is an error unless
    resize."""
    img = load_rgb(path)
    if img.size == size:
        return np.asarray(img), False
    if not resize:
        aligned = f" (aligned to multiples of {align}: --align {align})" if align else ""
        raise UserError(f"prediction {path} is {img.size[0]}x{img.size[1]} but its ground truth {gt_path} is "
                        f"{size[0]}x{size[1]}{aligned}; pass --pred_resize to resize predictions to that size")
    return np.asarray(img.resize(size, Image.BICUBIC)), True


def _aligned(img: Image.Image, align: int, path: str) -> Image.Image:
    """Return img aligned to multiples of align (unchanged when align is 0); too small is a UserError naming path."""
    if not align:
        return img
    try:
        return align_down(img, align)
    except UserError as err:
        raise UserError(f"{path}: {err} (--align {align})") from None


def score_predictions(opt: argparse.Namespace, name: str, set_opt: argparse.Namespace, dataset, pred_dir: str,
                      web_dir: str) -> tuple[SetResult, list[str]]:
    """Return ((images, mean scores of I and pred), the digests of the pairs scored) of one set's saved
    predictions, writing images, csv and page."""
    pairs = dataset.pairs[: int(min(opt.num_test, len(dataset.pairs)))]
    preds = _match(pairs, prediction_files(pred_dir, opt.pred_suffix), name, pred_dir, opt.pred_suffix)
    print(f"set {name}: {len(pairs)} image(s) from {set_opt.dataroot} ({dataset.layout} layout), predictions "
          f"from {pred_dir}")
    writer = ResultWriter(web_dir, PRED_ROLES, f"Predictions {pred_dir} on {name}", pred_protocol_line(opt),
                          opt.display_winsize)
    all_scores, resized = [], 0
    for pair, pred_path in zip(pairs, preds):
        gt_img, in_img = load_rgb(pair.gt), load_rgb(pair.input)
        if in_img.size != gt_img.size:
            raise UserError(f"ground truth {pair.gt} is {gt_img.size[0]}x{gt_img.size[1]} but input {pair.input} is "
                            f"{in_img.size[0]}x{in_img.size[1]}; a test pair must have the same size")
        gt_img, in_img = _aligned(gt_img, opt.align, pair.gt), _aligned(in_img, opt.align, pair.input)
        gt = np.asarray(gt_img)
        pred, was_resized = _load_prediction(pred_path, gt_img.size, opt.pred_resize, pair.gt, opt.align)
        resized += was_resized
        images = OrderedDict([("input", np.asarray(in_img)), ("pred", pred), ("gt", gt)])
        scores = {"I": psnr_ssim(images["input"], gt, opt.psnr), "pred": psnr_ssim(pred, gt, opt.psnr)}
        writer.add(pair.name, images, scores, (pair.input, pair.gt))
        all_scores.append((pair.name, scores))
    if resized:
        print(f"note: {name}: {resized} prediction(s) resized (bicubic) to their ground truth's size (--pred_resize)")
    result = _set_result(name, all_scores)
    writer.finish()
    return result, writer.digests


def pred_protocol_line(opt: argparse.Namespace) -> str:
    """Return the protocol line of --pred scoring: the metrics, and at which size predictions are scored."""
    size = describe_prediction_size(opt.align)
    if opt.pred_resize:
        size += " (predictions of another size resized to it, bicubic: --pred_resize)"
    return f"{describe_protocol(opt.psnr)}. {size}."


def evaluate_predictions(opt: argparse.Namespace, prepared: dict, folder: str) -> Run:
    """Return the Run of the --pred predictions on every set, each set's results under folder/<set>/."""
    pred_dirs = parse_pred(opt.pred, list(prepared))
    results, digests = {}, {}
    for name, (set_opt, dataset) in prepared.items():
        results[name], digests[name] = score_predictions(opt, name, set_opt, dataset, pred_dirs[name],
                                                         os.path.join(folder, name))
    return Run("predictions " + ", ".join(f"{n}={d}" for n, d in pred_dirs.items()), folder, results, digests)


# ----- the summary ------------------------------------------------------------------------------------------


def write_run_page(run: Run, header: list[str], labels: tuple[str, ...]) -> str:
    """Write run.folder/index.html: a row per set linked to the set's page, then the average; return its path."""
    rows = with_average(run.results)
    images, average = rows.pop(AVERAGE)
    return write_sets_page(run.folder, f"Evaluation of {run.label}", header, labels,
                           [(name, count, score_cells(scores, labels)) for name, (count, scores) in rows.items()],
                           images, score_cells(average, labels))


def write_spread_page(folder: str, header: list[str], runs: list[Run], labels: tuple[str, ...]) -> str:
    """Write folder/index.html for several checkpoints: per set each run's row, linked to that run's page of
    the set, and the mean ± std row; return its path."""
    by_label = {run.label: run for run in runs}
    rows = []
    for name, count, label, cells in spread_rows(runs, labels):
        page = None if label == MEAN_ROW else os.path.join(
            by_label[label].folder, "index.html" if name == AVERAGE else os.path.join(name, "index.html"))
        rows.append(([name, str(count), label, *cells], page))
    return write_runs_page(folder, f"Evaluation of {len(runs)} checkpoints", header,
                           ["set", "images", "run", *metric_columns(labels)], rows, SPREAD)


def evaluate(opt: argparse.Namespace) -> None:
    """Evaluate every checkpoint (or the --pred predictions) on every set; print, and write JSON and index.html."""
    prepared = open_sets(opt, parse_sets(opt.sets))
    folder = evaluation_folder(opt)
    if opt.pred is None:
        dataset = next(iter(prepared.values()))[1]
        protocol, size_policy = protocol_line(opt, dataset), dataset.size_policy_name()
        evaluated = [evaluate_checkpoint(opt, name, epoch, prepared) for name in opt.names for epoch in opt.epochs]
        runs, roles = [run for run, _ in evaluated], evaluated[0][1]
    else:
        protocol, roles = pred_protocol_line(opt), PRED_ROLES
        size_policy = size_policy_name(opt.align, keep_size=True)  # the ground truth's size, or the aligned one
        runs = [evaluate_predictions(opt, prepared, folder)]
    prints = set_fingerprints(runs[0])  # the same files are scored by every run
    header = [f"Metric protocol: {protocol}", sets_line(prints)]
    if len(runs) > 1:
        header.append(f"Runs: {len(runs)} checkpoints ({', '.join(run.label for run in runs)}); "
                      f"{MEAN_ROW} = the mean and the {SPREAD}.")
    print("\n" + "\n".join(header) + "\n")
    print(sets_markdown(with_average(runs[0].results), roles.labels) if len(runs) == 1
          else spread_markdown(runs, roles.labels))
    about = {"psnr": opt.psnr, "size_policy": size_policy, "protocol": protocol,
             "runs": [run.label for run in runs], **({"spread": SPREAD} if len(runs) > 1 else {})}
    if opt.json:
        os.makedirs(os.path.dirname(os.path.abspath(opt.json)), exist_ok=True)
        with open(opt.json, "w") as f:
            json.dump(as_json(runs, prints, about), f, indent=2, allow_nan=False)
        print(f"\njson: {os.path.abspath(opt.json)}")
    for run in runs:  # each run's own summary, as a single evaluation of it would write
        write_run_page(run, header[:2], roles.labels)
    page = write_spread_page(folder, header, runs, roles.labels) if len(runs) > 1 else os.path.join(
        runs[0].folder, "index.html")
    print(f"summary page: {os.path.abspath(page)}")
