"""Validation during training: the cascade scored on a held-out test-layout folder at epoch ends.

``--val_dataroot DIR`` (testB/ inputs, testA1/ ground truths paired by file stem, read by the
resize_natural_3 dataset in test mode exactly as test.py reads them) is run every ``--val_freq`` epochs
and after the last one through util/evaluation.run_test_set, the code path of test.py, with the
networks in eval mode. Each validation appends a row to checkpoints/<name>/val_log.csv (VAL_COLUMNS);
``--save_best`` keeps best_net_<G_T|G_R|D>.pth + best_train_state.pth for the highest mean T_3 PSNR.
Under torchrun rank 0 validates while the other ranks wait at a barrier.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from data import find_dataset_using_name
from data.resize_natural_3_dataset import describe_size_policy
from util import distributed
from util.errors import UserError
from util.evaluation import Scores, flat, mean_scores, metric_columns, run_test_set, text_table

VAL_COLUMNS = ["epoch", "samples", "lr", "seconds", "images", *metric_columns()]
BEST = "best"
BEST_KEY = "PSNR_T_3"


@dataclass
class ValResult:
    """One validation: mean scores (None when no image could be scored), images scored, skipped files, seconds."""

    scores: Scores | None
    images: int
    skipped: list[str]
    seconds: float


def validation_options(opt: argparse.Namespace) -> argparse.Namespace:
    """Return a copy of the training options that reads --val_dataroot as test.py reads a test folder."""
    return argparse.Namespace(**{**vars(opt), "is_train": False, "dataroot": opt.val_dataroot,
                                 "keep_size": opt.val_keep_size, "max_size": opt.val_max_size,
                                 "max_dataset_size": float("inf")})


def open_validation_set(opt: argparse.Namespace):
    """Return the validation dataset of --val_dataroot (None without it); bad input is a UserError."""
    if opt.save_best and not opt.val_dataroot:
        raise UserError("--save_best needs --val_dataroot (the best checkpoint is chosen by validation)")
    if not opt.val_dataroot:
        return None
    if opt.val_freq < 1 or opt.val_max < 1:
        raise UserError(f"--val_freq {opt.val_freq} --val_max {opt.val_max}: both must be at least 1")
    root = opt.val_dataroot
    if not os.path.isdir(root):
        raise UserError(f"--val_dataroot {root}: folder not found")
    # Any test-set layout test.py reads (data/layouts.py); none found is a UserError listing them.
    dataset = find_dataset_using_name("resize_natural_3")(validation_options(opt))
    used = range(min(opt.val_max, len(dataset)))
    missing = [dataset.pairs[k].input for k in used if dataset.pairs[k].gt is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]}: validation input without a ground truth (for testB/, in testA1/ with the "
                        f"same name, any image extension){more}; validation needs one for every input")
    if distributed.is_main_process():
        print(f"validation: the first {len(used)} of {len(dataset)} images of {root}, every {opt.val_freq} "
              f"epoch(s) and after the last; {describe_size_policy(validation_options(opt))}")
    return dataset


def validate(model, dataset, opt: argparse.Namespace) -> ValResult:
    """Return the mean scores of the first --val_max images, run in eval mode (train mode restored after).

    Undecodable images are skipped with one warning each and listed; the training RNG streams are left
    untouched, so a run trains the same with or without validation.
    """
    start = time.time()
    skipped: list[str] = []
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            scores = [r.scores for r in run_test_set(model, dataset, opt.val_max, opt.psnr, skip_bad=True,
                                                     skipped=skipped, scored_only=True)]
    finally:
        model.train()
    return ValResult(mean_scores(scores), len(scores), skipped, time.time() - start)


def read_log(path: str) -> list[dict[str, str]]:
    """Return the rows of a val_log.csv (empty when there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: str, row: dict[str, float]) -> None:
    """Append one row (VAL_COLUMNS keys) to val_log.csv, writing the header first when the file is new."""
    new = not os.path.isfile(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(VAL_COLUMNS)
        writer.writerow([repr(row[c]) if isinstance(row[c], float) else str(row[c]) for c in VAL_COLUMNS])


def log_table(path: str) -> str:
    """Return val_log.csv as a console table (epoch, samples, images, PSNR/SSIM of I and T_3)."""
    columns = ["epoch", "samples", "images", "PSNR_I", "SSIM_I", "PSNR_T_3", "SSIM_T_3"]
    rows = [[r[c] if c in ("epoch", "samples", "images") else f"{float(r[c]):.{2 if 'PSNR' in c else 4}f}"
             for c in columns] for r in read_log(path)]
    return text_table(columns, rows)


class Validator:
    """Runs validation at epoch ends, logs it, plots it, and keeps the best checkpoint."""

    def __init__(self, opt: argparse.Namespace, dataset, save_dir: str):
        self.opt = opt
        self.dataset = dataset
        self.save_dir = save_dir
        self.log_path = os.path.join(save_dir, "val_log.csv")
        self.best = -math.inf
        if not opt.continue_train and distributed.is_main_process() and os.path.isfile(self.log_path):
            os.remove(self.log_path)  # a new run starts a new log; a resumed run appends

    def resume(self, model) -> None:
        """Take the best value so far from the best checkpoint's training state, so a worse one never replaces it."""
        path = model.training_state_path(BEST)
        if self.opt.save_best and os.path.isfile(path):
            self.best = float(model.load_extra(BEST).get(BEST_KEY, -math.inf))
            if distributed.is_main_process():
                print(f"best so far: {BEST_KEY} {self.best:.4f} ({path})")

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Return True when this epoch ends with a validation (every --val_freq epochs, and the last)."""
        return epoch % self.opt.val_freq == 0 or epoch == last_epoch

    def run(self, model, epoch: int, total_iters: int, lr: float, visualizer) -> None:
        """Validate on rank 0 (the others wait), append to val_log.csv, print, plot and save best."""
        if distributed.is_main_process():
            result = validate(model, self.dataset, self.opt)
            values = flat(result.scores) if result.scores else [math.nan] * len(metric_columns())
            row = {"epoch": epoch, "samples": total_iters * self.opt.world_size, "lr": float(lr),
                   "seconds": round(result.seconds, 3), "images": result.images,
                   **{c: float(v) for c, v in zip(metric_columns(), values)}}
            append_row(self.log_path, row)
            value = row[BEST_KEY]
            better = self.opt.save_best and value > self.best  # False for NaN
            if better:
                self.best = value
                model.save_networks(BEST)
                model.save_training_state(BEST, epoch, total_iters, extra={BEST_KEY: value})
            skipped = f", {len(result.skipped)} undecodable skipped" if result.skipped else ""
            print(f"validation after epoch {epoch}: T_3 PSNR {value:.2f} SSIM {row['SSIM_T_3']:.4f} (input "
                  f"{row['PSNR_I']:.2f} {row['SSIM_I']:.4f}) on {result.images} image(s){skipped} in "
                  f"{result.seconds:.1f} s" + (" [best so far: saved 'best']" if better else ""))
            visualizer.plot_validation(epoch, value)
        distributed.barrier()


def main(argv: list[str]) -> None:
    """Print the table of a val_log.csv given on the command line."""
    if len(argv) != 1 or not os.path.isfile(argv[0]):
        sys.exit("usage: python -m util.validation checkpoints/<name>/val_log.csv")
    print(log_table(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
