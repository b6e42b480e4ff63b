"""Test IBCLN: python test.py --dataroot DIR --name NAME --model IBCLN --epoch final ...

Writes results/<name>/<phase>_<epoch>/images/<image>_<visual>_<kk>.png, index.html and metrics.csv with
PSNR/SSIM of the input I and of each step T_1..T_3 where testA1 holds a ground truth (util/evaluation.py
runs and scores every image; util/metrics.py says how). metrics.csv grows by one row per image, so an
interrupted run keeps its scores; the page is written at the end, and on Ctrl-C for the images done.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import OrderedDict

from tqdm import tqdm

from data import create_dataset
from data.resize_natural_3_dataset import describe_size_policy
from models import create_model
from options.base_options import run_cli
from options.test_options import TestOptions, results_folder
from util import html
from util.evaluation import ImageResult, MetricsCSV, format_cells, mean_scores, metric_columns, run_test_set, text_table
from util.metrics import describe_protocol
from util.result_page import write_test_page
from util.util import save_image


def results_dir(opt: argparse.Namespace) -> str:
    """Return the folder of this run's results: <results_dir>/<name>/<phase>_<epoch>[_iter<n>]."""
    return results_folder(opt)


def protocol_line(opt: argparse.Namespace) -> str:
    """Return the one line that says how the numbers were computed: metric protocol and size policy."""
    return f"{describe_protocol(opt.psnr)}. {describe_size_policy(opt)}."


def test_model(opt: argparse.Namespace, model, dataset, web_dir: str, progress: bool = True) -> list[ImageResult]:
    """Run and score every test image, saving images, metrics.csv and index.html under web_dir; return the results.

    The images themselves are not kept in the returned results (only names and scores).
    """
    img_dir = os.path.join(web_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    table = MetricsCSV(os.path.join(web_dir, "metrics.csv"))
    done: list[ImageResult] = []
    rows: list[tuple[str, list[str], dict | None]] = []
    total = int(min(opt.num_test, len(dataset)))
    title = f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}"
    try:
        results = run_test_set(model, dataset, opt.num_test, opt.psnr, skip_bad=opt.skip_bad_images)
        for result in tqdm(results, total=total, desc="testing", unit="img", disable=not progress):
            files = []
            for label, image in result.images.items():
                files.append(f"{result.name}_{label}.png")
                save_image(image, os.path.join(img_dir, files[-1]))
            table.add(result.name, result.scores)
            rows.append((result.name, files, result.scores))
            done.append(dataclasses.replace(result, images=OrderedDict()))  # free the images
    except KeyboardInterrupt:
        page = write_test_page(web_dir, title + " (interrupted)", protocol_line(opt), rows,
                               mean_scores([r.scores for r in done]), width=opt.display_winsize)
        print(f"\ninterrupted after {len(done)} image(s): {page} and metrics.csv hold them")
        raise SystemExit(130) from None
    mean = mean_scores([r.scores for r in done])
    table.finish(mean)
    write_test_page(web_dir, title, protocol_line(opt), rows, mean, width=opt.display_winsize)
    return done


def load_test_model(opt: argparse.Namespace):
    """Return the model with its checkpoint loaded, in eval mode (train mode with --dropout_at_test)."""
    model = create_model(opt)
    model.setup(opt)
    if opt.dropout_at_test:
        model.train()  # the released protocol: dropout stays active, outputs vary run to run
    else:
        model.eval()
    return model


def main(opt: argparse.Namespace) -> None:
    """Run the cascade on every test image, save the images, the metrics and the HTML page."""
    dataset = create_dataset(opt).dataset
    model = load_test_model(opt)
    web_dir = results_dir(opt)
    done = test_model(opt, model, dataset, web_dir)
    rows = [[html.shown(r.name), *format_cells(r.scores)] for r in done]
    rows.append(["mean", *format_cells(mean_scores([r.scores for r in done]))])
    print(protocol_line(opt))
    print(text_table(["image", *metric_columns()], rows))
    print(f"results page: {os.path.abspath(os.path.join(web_dir, 'index.html'))}")


if __name__ == "__main__":
    run_cli(main, TestOptions())
