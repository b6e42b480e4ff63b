"""Evaluation like the paper's: several test sets in one run, for a checkpoint or for saved predictions.

    python evaluate.py --name IBCLN --epoch final --sets objects=DIR postcard=DIR wild=DIR real20=DIR nature=DIR
    python evaluate.py --sets nature=DIR --pred OUTPUTS_DIR [--pred_suffix _fake_Ts_03] [--pred_resize]

Each DIR may be in any layout of data/layouts.py, opened through --dataset_mode as test.py opens its set.
With a checkpoint, every set runs through evaluation/testing.test_model (the same inference, metrics, images,
metrics.csv and page as test.py, under results/<name>/eval_<epoch>/<set>/). With --pred, saved predictions
are scored against each set's ground truth at the ground truth's size (results under
results/<name>/eval_pred/<set>/). Prints a Markdown table
(one row per set, then the image-weighted average), writes --json and an index.html linking every set's page.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
from collections import OrderedDict
from urllib.parse import quote

import numpy as np
from dominate.tags import h1, p
from PIL import Image

from data import open_test_set
from data.image_folder import load_rgb, make_dataset
from data.layouts import Pair
from data.pairing import few, index_by_name, stem
from evaluation.metrics import describe_protocol, psnr_ssim
from evaluation.scoring import mean_scores, weighted_mean
from evaluation.testing import ResultWriter, load_test_model, protocol_line, test_model
from models.base_model import VisualRoles
from options.test_options import results_folder
from pages import html
from util.errors import UserError
from util.logs import Scores, format_cells, metric_columns

# Saved predictions: the input and the prediction are scored against the ground truth.
PRED_ROLES = VisualRoles(
    steps=(("I", "input"), ("pred", "pred")), ground_truth="gt", input="I", result="pred",
    rows=((("input", "input I", "I"), ("pred", "prediction", "pred"), ("gt", "ground truth", None)),))
SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

SetResult = tuple[int, Scores]  # (number of images scored, mean scores)


def parse_sets(entries: list[str]) -> dict[str, str]:
    """Return set name -> folder from NAME=DIR entries; a UserError for a malformed, repeated or missing one."""
    sets: dict[str, str] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if not sep or not folder or not SET_NAME.fullmatch(name):
            raise UserError(f"--sets {entry}: expected NAME=DIR, NAME made of letters, digits, _ . - "
                            "(e.g. nature=datasets/nature)")
        if name == "average" or name in sets:
            raise UserError(f"--sets {entry}: the name '{name}' is " +
                            ("reserved for the average row" if name == "average" else "given twice"))
        if not os.path.isdir(folder):
            raise UserError(f"--sets {entry}: folder {folder} not found")
        sets[name] = folder
    return sets


def parse_pred(entries: list[str], set_names: list[str]) -> dict[str, str]:
    """Return set name -> prediction folder: a bare DIR for a single set, else one NAME=DIR per set."""
    if len(entries) == 1 and len(set_names) == 1 and not entries[0].startswith(set_names[0] + "="):
        by_set = {set_names[0]: entries[0]}
    else:
        by_set = {}
        for entry in entries:
            name, sep, folder = entry.partition("=")
            if not sep or name not in set_names or name in by_set:
                raise UserError(f"--pred {entry}: expected one NAME=DIR per set, NAME one of {', '.join(set_names)} "
                                "(a bare DIR only with a single set)")
            by_set[name] = folder
        missing = [n for n in set_names if n not in by_set]
        if missing:
            raise UserError(f"--pred: no prediction folder for set(s) {', '.join(missing)}; give one NAME=DIR per set")
    for name, folder in by_set.items():
        if not os.path.isdir(folder):
            raise UserError(f"--pred {name}: folder {folder} not found")
    return by_set


def _note_skipped(set_name: str, names: list[str]) -> None:
    if names:
        print(f"note: {set_name}: {len(names)} input(s) without ground truth are skipped: {few(names)}")


# ----- a checkpoint ----------------------------------------------------------------------------------------


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


def evaluate_model(opt: argparse.Namespace, prepared: dict, eval_dir: str) -> tuple[dict[str, SetResult], VisualRoles]:
    """Return (set name -> (images, mean scores of every scored step), the model's roles), the model built once."""
    model = load_test_model(opt)
    results = {}
    for name, (set_opt, dataset) in prepared.items():
        print(f"set {name}: {len(dataset)} image(s) from {set_opt.dataroot} ({dataset.layout} layout)")
        done = test_model(set_opt, model, dataset, os.path.join(eval_dir, name))
        results[name] = _set_result(name, [(r.name, r.scores) for r in done if r.scores is not None])
    return results, model.roles


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


def _load_prediction(path: str, size: tuple[int, int], resize: bool, gt_path: str) -> tuple[np.ndarray, bool]:
    img = load_rgb(path)
    if img.size == size:
        return np.asarray(img), False
    if not resize:
        raise UserError(f"prediction {path} is {img.size[0]}x{img.size[1]} but its ground truth {gt_path} is "
                        f"{size[0]}x{size[1]}; pass --pred_resize to resize predictions to the ground truth's size")
    return np.asarray(img.resize(size, Image.BICUBIC)), True


def score_predictions(opt: argparse.Namespace, name: str, set_opt: argparse.Namespace, dataset, pred_dir: str,
                      web_dir: str) -> SetResult:
    """Return (images, mean scores of I and pred) of one set's saved predictions, writing images, csv and page."""
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
        gt = np.asarray(gt_img)
        pred, was_resized = _load_prediction(pred_path, gt_img.size, opt.pred_resize, pair.gt)
        resized += was_resized
        images = OrderedDict([("input", np.asarray(in_img)), ("pred", pred), ("gt", gt)])
        scores = {"I": psnr_ssim(images["input"], gt, opt.psnr), "pred": psnr_ssim(pred, gt, opt.psnr)}
        writer.add(pair.name, images, scores)
        all_scores.append((pair.name, scores))
    if resized:
        print(f"note: {name}: {resized} prediction(s) resized (bicubic) to their ground truth's size (--pred_resize)")
    result = _set_result(name, all_scores)
    writer.finish()
    return result


def pred_protocol_line(opt: argparse.Namespace) -> str:
    """Return the protocol line of --pred scoring: the metrics, and at which size predictions are scored."""
    size = "size: predictions scored at the ground truth's original size"
    if opt.pred_resize:
        size += " (predictions of another size resized to it, bicubic: --pred_resize)"
    return f"{describe_protocol(opt.psnr)}. {size}."


# ----- the report -------------------------------------------------------------------------------------------


def with_average(results: dict[str, SetResult]) -> dict[str, SetResult]:
    """Return the per-set results followed by 'average': the image-weighted mean over all sets."""
    total = sum(n for n, _ in results.values())
    return {**results, "average": (total, weighted_mean(list(results.values())))}


def markdown_table(rows: dict[str, SetResult], labels: tuple[str, ...]) -> str:
    """Return a Markdown table: set, images, then PSNR/SSIM of each label (PSNR 2 decimals, SSIM 4)."""
    header = ["set", "images", *metric_columns(labels)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (count, scores) in rows.items():
        cells = [f"**{name}**" if name == "average" else name, str(count), *format_cells(scores, labels)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_json(rows: dict[str, SetResult]) -> dict:
    """Return {set: {"images": N, "psnr": {label: value}, "ssim": {label: value}}} for every row.

    A non-finite value (an infinite band-wise PSNR, a SSIM that could not be computed) is written as null, so
    that the file is strict JSON.
    """
    def number(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {name: {"images": count, "psnr": {label: number(ps) for label, (ps, _) in scores.items()},
                   "ssim": {label: number(ss) for label, (_, ss) in scores.items()}}
            for name, (count, scores) in rows.items()}


def write_index(eval_dir: str, title: str, protocol: str, rows: dict[str, SetResult],
                labels: tuple[str, ...]) -> str:
    """Write eval_dir/index.html: the table, each set linked to its own page, the average set apart; return its path."""
    doc = html.new_page(title)
    sets = [(f"{name} ({count} images)", scores, quote(name) + "/index.html")
            for name, (count, scores) in rows.items() if name != "average"]
    count, average = rows["average"]
    with doc:
        h1(html.shown(title))
        p(protocol, cls="protocol")
        html.metrics_table(sets, labels, first="set", with_mean=True, mean=average)
        p(f"The last row is the average over all {count} images, weighted by each set's image count.")
    os.makedirs(eval_dir, exist_ok=True)
    return html.save(doc, eval_dir)


def evaluate(opt: argparse.Namespace) -> None:
    """Evaluate the checkpoint (or the --pred predictions) on every set; print, and write JSON and index.html."""
    prepared = open_sets(opt, parse_sets(opt.sets))
    if opt.pred is None:
        eval_dir, protocol = results_folder(opt), protocol_line(opt, next(iter(prepared.values()))[1])
        results, roles = evaluate_model(opt, prepared, eval_dir)
        title = f"Evaluation of {opt.name}, epoch {opt.epoch}"
    else:
        pred_dirs = parse_pred(opt.pred, list(prepared))
        eval_dir, roles, protocol = os.path.join(opt.results_dir, opt.name, "eval_pred"), PRED_ROLES, \
            pred_protocol_line(opt)
        results = {name: score_predictions(opt, name, set_opt, dataset, pred_dirs[name], os.path.join(eval_dir, name))
                   for name, (set_opt, dataset) in prepared.items()}
        title = "Evaluation of saved predictions: " + ", ".join(f"{n}={d}" for n, d in pred_dirs.items())
    rows = with_average(results)
    print(f"\nMetric protocol: {protocol}\n")
    print(markdown_table(rows, roles.labels))
    if opt.json:
        os.makedirs(os.path.dirname(os.path.abspath(opt.json)), exist_ok=True)
        with open(opt.json, "w") as f:
            json.dump(as_json(rows), f, indent=2, allow_nan=False)
        print(f"\njson: {os.path.abspath(opt.json)}")
    page = write_index(eval_dir, title, protocol, rows, roles.labels)
    print(f"summary page: {os.path.abspath(page)}")
