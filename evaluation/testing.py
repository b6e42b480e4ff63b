"""A test run: every image of a test set through the model, scored, saved, tabled and shown on a page.

Writes <results_dir>/<name>/<phase>_<epoch>[_iter<n>]/images/<image>_<visual>.png, metrics.csv (one row
per image as it is scored, so an interrupted run keeps its scores, then the mean row) and index.html
(written at the end, and on Ctrl-C for the images done). ResultWriter is the one writer of those files,
for test.py, each set of evaluate.py and evaluate.py --pred.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import OrderedDict

import numpy as np
from tqdm import tqdm

from data import open_test_set
from data.base_dataset import BaseDataset
from data.fingerprint import describe, fingerprint, pair_digest
from evaluation.metrics import describe_protocol
from evaluation.reports import format_cells, score_cells, text_table
from evaluation.scoring import ImageResult, Scores, flat, mean_scores, run_test_set
from models import checkpoint
from models.base_model import BaseModel, VisualRoles
from options.model_config import create_model
from options.test_options import results_folder
from pages.html import shown
from pages.result_page import write_test_page
from util.images import save_image
from util.logs import MetricsCSV, metric_columns


class ResultWriter:
    """images/, metrics.csv and index.html of one run under web_dir, written as images are added."""

    def __init__(self, web_dir: str, roles: VisualRoles, title: str, protocol: str, width: int = 256):
        self.web_dir, self.roles, self.title, self.protocol, self.width = web_dir, roles, title, protocol, width
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.table = MetricsCSV(os.path.join(web_dir, "metrics.csv"), roles.labels)
        self.rows: list[tuple[str, list[str], Scores | None]] = []
        self.digests: list[str] = []

    def add(self, name: str, images: OrderedDict[str, np.ndarray], scores: Scores | None,
            files: tuple[str, str] | None = None) -> str:
        """Save one image's visuals as <name>_<visual>.png and its metrics row; return the digest of its
        (input, ground truth) files when it is scored, else ''."""
        saved = []
        for label, image in images.items():
            saved.append(f"{name}_{label}.png")
            save_image(image, os.path.join(self.img_dir, saved[-1]))
        self.table.add(name, flat(scores, self.roles.labels))
        self.rows.append((name, saved, scores))
        if scores is None or files is None:
            return ""
        self.digests.append(pair_digest(*files))
        return self.digests[-1]

    def mean(self) -> Scores | None:
        """Return the mean scores of the images added so far (None when none has scores)."""
        return mean_scores([scores for _, _, scores in self.rows])

    def test_set(self) -> str:
        """Return the line naming the pairs scored so far: their number and fingerprint ('' when none)."""
        return f"Test set: {describe(len(self.digests), fingerprint(self.digests))}." if self.digests else ""

    def finish(self, interrupted: bool = False) -> str:
        """Write the mean row (unless interrupted) and the page of the images added; return the page's path."""
        labels, mean = self.roles.labels, self.mean()
        if not interrupted:
            self.table.finish(flat(mean, labels))
        title = self.title + (" (interrupted)" if interrupted else "")
        rows = [(name, files, score_cells(scores, labels)) for name, files, scores in self.rows]
        return write_test_page(self.web_dir, title, self.protocol, rows, score_cells(mean, labels), self.roles,
                               self.width, self.test_set())


def protocol_line(opt: argparse.Namespace, dataset: BaseDataset) -> str:
    """Return the one line that says how the numbers were computed: metric protocol and size policy."""
    return f"{describe_protocol(opt.psnr)}. {dataset.size_policy()}."


def load_test_model(opt: argparse.Namespace) -> BaseModel:
    """Return the model with its checkpoint loaded, in eval mode (train mode with --dropout_at_test)."""
    model = create_model(opt)
    checkpoint.load_for_run(model, opt)
    model.setup(opt.verbose)
    if opt.dropout_at_test:
        model.train()  # the released protocol: dropout stays active, outputs vary run to run
    else:
        model.eval()
    return model


def test_model(opt: argparse.Namespace, model: BaseModel, dataset: BaseDataset, web_dir: str,
               progress: bool = True) -> list[ImageResult]:
    """Run and score every test image, saving images, metrics.csv and index.html under web_dir; return the results.

    The images themselves are not kept in the returned results (names, scores and the digests of the files
    scored, for the set's fingerprint).
    """
    title = f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}" + (" (EMA weights)" if opt.ema else "")
    writer = ResultWriter(web_dir, model.roles, title, protocol_line(opt, dataset), opt.display_winsize)
    done: list[ImageResult] = []
    total = int(min(opt.num_test, len(dataset)))
    try:
        results = run_test_set(model, dataset, opt.num_test, opt.psnr, skip_bad=opt.skip_bad_images)
        for result in tqdm(results, total=total, desc="testing", unit="img", disable=not progress):
            digest = writer.add(result.name, result.images, result.scores, (result.path, result.gt_path))
            done.append(dataclasses.replace(result, images=OrderedDict(), digest=digest))  # free the images
    except KeyboardInterrupt:
        page = writer.finish(interrupted=True)
        print(f"\ninterrupted after {len(done)} image(s): {page} and metrics.csv hold them")
        raise SystemExit(130) from None
    writer.finish()
    return done


def test(opt: argparse.Namespace) -> None:
    """Run the model on every image of --dataroot; save the images, the metrics and the page; print the table."""
    dataset = open_test_set(opt)
    model = load_test_model(opt)
    web_dir = results_folder(opt)
    done = test_model(opt, model, dataset, web_dir)
    labels = model.roles.labels
    rows = [[shown(r.name), *format_cells(r.scores, labels)] for r in done]
    rows.append(["mean", *format_cells(mean_scores([r.scores for r in done]), labels)])
    print(protocol_line(opt, dataset))
    digests = [r.digest for r in done if r.digest]
    if digests:
        print(f"Test set: {describe(len(digests), fingerprint(digests))}.")
    print(text_table(["image", *metric_columns(labels)], rows))
    print(f"results page: {os.path.abspath(os.path.join(web_dir, 'index.html'))}")
