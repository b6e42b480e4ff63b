"""Evaluate like the paper: one command over several test sets, for a checkpoint or for saved predictions.

    python evaluate.py --name IBCLN --epoch final --sets objects=DIR postcard=DIR wild=DIR real20=DIR nature=DIR
    python evaluate.py --sets nature=DIR --pred OUTPUTS_DIR [--pred_suffix _fake_Ts_03] [--pred_resize]

Each DIR may be in any layout of data/layouts.py. With a checkpoint, every set runs through test.py's
test_model (the same inference, metrics, images, metrics.csv and page, under
results/<name>/eval_<epoch>/<set>/). With --pred, saved predictions are scored against each set's ground
truth at the ground truth's size (results under results/<name>/eval_pred/<set>/). Prints a Markdown table
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

from data import create_dataset
from data.image_folder import load_rgb, make_dataset
from data.layouts import Pair, find_pairs
from options.base_options import run_cli
from options.test_options import TestOptions
from test import load_test_model, protocol_line, results_dir, test_model
from util import html
from util.errors import UserError
from util.evaluation import STEP_LABELS, MetricsCSV, Scores, format_cells, mean_scores, metric_columns, weighted_mean
from util.metrics import describe_protocol, psnr_ssim
from util.result_page import write_test_page
from util.util import save_image

PRED_LABELS = ("I", "pred")
SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SHOWN = 5  # names shown in an error listing many

SetResult = tuple[int, Scores]  # (number of images scored, mean scores)


class EvaluateOptions(TestOptions):
    """test.py's options (every test flag works), with --sets instead of --dataroot, and the evaluation flags."""

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the test flags and --sets, --json, --pred, --pred_suffix, --pred_resize."""
        parser = TestOptions.initialize(self, parser)
        parser._option_string_actions["--dataroot"].required = False  # each --sets entry is a dataroot
        parser.add_argument("--sets", nargs="+", required=True, metavar="NAME=DIR",
                            help="the test sets: a name (letters, digits, _ . -) and a folder in any layout")
        parser.add_argument("--json", type=str, default="", help="also write the table as JSON to this file")
        parser.add_argument("--pred", nargs="+", default=None, metavar="[NAME=]DIR",
                            help="score saved predictions instead of running a model: one NAME=DIR per set "
                                 "(a bare DIR when there is one set); matched to ground truths by file stem")
        parser.add_argument("--pred_suffix", type=str, default="",
                            help="--pred: only files whose name (without extension) ends with this, removed "
                                 "before matching, e.g. _fake_Ts_03 for test.py's images/")
        parser.add_argument("--pred_resize", action="store_true",
                            help="--pred: resize predictions of another size to the ground truth's (bicubic) "
                                 "instead of stopping with an error")
        parser.set_defaults(phase="eval")
        return parser


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


def _few(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def _note_skipped(set_name: str, names: list[str]) -> None:
    if names:
        print(f"note: {set_name}: {len(names)} input(s) without ground truth are skipped: {_few(names)}")


# ----- a checkpoint ----------------------------------------------------------------------------------------


def evaluate_model(opt: argparse.Namespace, sets: dict[str, str], eval_dir: str) -> dict[str, SetResult]:
    """Return set name -> (images, mean scores of I, T_1..T_3), running the model once built on every set."""
    prepared = {}
    for name, root in sets.items():  # every set is checked before the model is built
        set_opt = copy.copy(opt)
        set_opt.dataroot = root
        dataset = create_dataset(set_opt).dataset
        _note_skipped(name, dataset.only_with_ground_truth())
        if len(dataset) == 0:
            raise UserError(f"--sets {name}={root}: no input has a ground truth ({dataset.layout} layout): "
                            "nothing to evaluate")
        prepared[name] = (set_opt, dataset)
    model = load_test_model(opt)
    results = {}
    for name, (set_opt, dataset) in prepared.items():
        print(f"set {name}: {len(dataset)} image(s) from {set_opt.dataroot} ({dataset.layout} layout)")
        done = test_model(set_opt, model, dataset, os.path.join(eval_dir, name))
        results[name] = _set_result(name, [(r.name, r.scores) for r in done if r.scores is not None])
    return results


def _set_result(name: str, scored: list[tuple[str, Scores]]) -> SetResult:
    """Return (images, mean scores) of a set's (image name, scores); notes images whose PSNR is infinite."""
    mean = mean_scores([scores for _, scores in scored])
    if mean is None:
        raise UserError(f"set {name}: no image could be scored")
    infinite = [image for image, scores in scored if any(math.isinf(ps) for ps, _ in scores.values())]
    if infinite:
        print(f"note: {name}: {len(infinite)} image(s) have a channel identical to the ground truth, so an "
              f"infinite band-wise PSNR, and the set's mean PSNR of that column is infinite: {_few(infinite)}")
    return len(scored), mean


# ----- saved predictions ------------------------------------------------------------------------------------


def prediction_files(folder: str, suffix: str) -> dict[str, str]:
    """Return name -> path of the images in folder whose stem ends with suffix (removed); duplicates are an error."""
    found: dict[str, str] = {}
    for path in make_dataset(folder):
        stem = os.path.splitext(os.path.basename(path))[0]
        if not stem.endswith(suffix) or stem == suffix:
            continue
        name = stem[: len(stem) - len(suffix)]
        if name in found:
            raise UserError(f"{folder}: {os.path.basename(found[name])} and {os.path.basename(path)} are both the "
                            f"prediction for '{name}'; keep one")
        found[name] = path
    return found


def _match(pairs: list[Pair], preds: dict[str, str], set_name: str, folder: str, suffix: str) -> list[str]:
    """Return the prediction path of each pair (by its name, else its input's stem); missing ones are an error."""
    matched, missing = [], []
    for pair in pairs:
        path = preds.get(pair.name) or preds.get(os.path.splitext(os.path.basename(pair.input))[0])
        matched.append(path)
        if path is None:
            missing.append(pair.name)
    if missing:
        hint = f" (no image file there ends with --pred_suffix '{suffix}')" if suffix and not preds else ""
        raise UserError(f"--pred {set_name}: {folder} has no prediction for {len(missing)} of {len(pairs)} "
                        f"image(s): {_few(missing)}{hint}")
    return matched


def _load_prediction(path: str, size: tuple[int, int], resize: bool, gt_path: str) -> tuple[np.ndarray, bool]:
    img = load_rgb(path)
    if img.size == size:
        return np.asarray(img), False
    if not resize:
        raise UserError(f"prediction {path} is {img.size[0]}x{img.size[1]} but its ground truth {gt_path} is "
                        f"{size[0]}x{size[1]}; pass --pred_resize to resize predictions to the ground truth's size")
    return np.asarray(img.resize(size, Image.BICUBIC)), True


def score_predictions(opt: argparse.Namespace, name: str, root: str, pred_dir: str, web_dir: str) -> SetResult:
    """Return (images, mean scores of I and pred) of one set's saved predictions, writing images, csv and page."""
    layout, pairs = find_pairs(root, opt.layout, opt.pair_by)
    _note_skipped(name, [p.name for p in pairs if p.gt is None])
    pairs = [p for p in pairs if p.gt is not None][: int(min(opt.num_test, len(pairs)))]
    if not pairs:
        raise UserError(f"--sets {name}={root}: no input has a ground truth ({layout} layout): nothing to evaluate")
    preds = _match(pairs, prediction_files(pred_dir, opt.pred_suffix), name, pred_dir, opt.pred_suffix)
    print(f"set {name}: {len(pairs)} image(s) from {root} ({layout} layout), predictions from {pred_dir}")
    img_dir = os.path.join(web_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    table = MetricsCSV(os.path.join(web_dir, "metrics.csv"), PRED_LABELS)
    rows, all_scores, resized = [], [], 0
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
        files = []
        for label, image in images.items():
            files.append(f"{pair.name}_{label}.png")
            save_image(image, os.path.join(img_dir, files[-1]))
        table.add(pair.name, scores)
        rows.append((pair.name, files, scores))
        all_scores.append((pair.name, scores))
    if resized:
        print(f"note: {name}: {resized} prediction(s) resized (bicubic) to their ground truth's size (--pred_resize)")
    result = _set_result(name, all_scores)
    table.finish(result[1])
    write_test_page(web_dir, f"Predictions {pred_dir} on {name}", pred_protocol_line(opt), rows, result[1],
                    width=opt.display_winsize, labels=PRED_LABELS)
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


def main(opt: argparse.Namespace) -> None:
    """Evaluate the checkpoint (or the --pred predictions) on every set; print, and write JSON and index.html."""
    sets = parse_sets(opt.sets)
    if opt.pred is None:
        eval_dir, labels, protocol = results_dir(opt), STEP_LABELS, protocol_line(opt)
        results = evaluate_model(opt, sets, eval_dir)
        title = f"Evaluation of {opt.name}, epoch {opt.epoch}"
    else:
        pred_dirs = parse_pred(opt.pred, list(sets))
        eval_dir, labels, protocol = os.path.join(opt.results_dir, opt.name, "eval_pred"), PRED_LABELS, \
            pred_protocol_line(opt)
        results = {name: score_predictions(opt, name, root, pred_dirs[name], os.path.join(eval_dir, name))
                   for name, root in sets.items()}
        title = "Evaluation of saved predictions: " + ", ".join(f"{n}={d}" for n, d in pred_dirs.items())
    rows = with_average(results)
    print(f"\nMetric protocol: {protocol}\n")
    print(markdown_table(rows, labels))
    if opt.json:
        os.makedirs(os.path.dirname(os.path.abspath(opt.json)), exist_ok=True)
        with open(opt.json, "w") as f:
            json.dump(as_json(rows), f, indent=2, allow_nan=False)
        print(f"\njson: {os.path.abspath(opt.json)}")
    page = write_index(eval_dir, title, protocol, rows, labels)
    print(f"summary page: {os.path.abspath(page)}")


if __name__ == "__main__":
    run_cli(main, EvaluateOptions())
