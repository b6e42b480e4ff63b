"""Validation during training: the cascade scored on a held-out test set at epoch ends.

``--val_dataroot DIR`` (any test-set layout, opened through --dataset_mode in test mode exactly as test.py
opens its set) is run every ``--val_freq`` epochs and after the last one through
evaluation/scoring.run_test_set, the code path of test.py, with the networks in eval mode and cuDNN's
benchmark mode off (each new image size would be autotuned; training's setting is restored after). Each validation
appends a row to checkpoints/<name>/val_log.csv (util/logs.py); ``--save_best`` keeps the 'best'
checkpoint (models/checkpoint.py) for the highest mean PSNR of the model's result (IBCLN: T_3), and
``--keep_best K`` the K best (models/retention.py). With --ema_decay the EMA weights are the ones validated
(and so the ones 'best' and --keep_best follow); the training weights come back after. Under
torchrun rank 0 validates while the other ranks wait for its result (the process group's timeout,
util/distributed.PROCESS_GROUP_TIMEOUT, is set to cover a validation).

    python -m evaluation.validation checkpoints/<name>/val_log.csv    # the log as a table
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from data import find_dataset_using_name, open_test_set
from data.base_dataset import BaseDataset
from evaluation.reports import metric_cell, text_table
from evaluation.scoring import Scores, flat, mean_scores, run_test_set
from models import checkpoint, retention
from models.base_model import BaseModel
from options.train_options import VAL_TWINS
from util import distributed
from util.errors import UserError
from util.logs import VAL_FIXED, append_val_row, metric_columns, read_val_rows, truncate_val_log

BEST = "best"


@dataclass
class ValResult:
    """One validation: mean scores (None when no image could be scored), images scored, skipped files, seconds."""

    scores: Scores | None
    images: int
    skipped: list[str]
    seconds: float


def validation_options(opt: argparse.Namespace) -> argparse.Namespace:
    """Return a copy of the training options that reads --val_dataroot as test.py reads a test folder."""
    sizes = {flag: getattr(opt, twin) for flag, twin in VAL_TWINS.items()}
    return argparse.Namespace(**{**vars(opt), "is_train": False, "dataroot": opt.val_dataroot, **sizes,
                                 "max_dataset_size": float("inf")})


def open_validation_set(opt: argparse.Namespace) -> BaseDataset | None:
    """Return the validation dataset of --val_dataroot (None without it); bad input is a UserError."""
    for flag, wanted in (("--save_best", opt.save_best), (f"--keep_best {opt.keep_best}", opt.keep_best)):
        if wanted and not opt.val_dataroot:
            raise UserError(f"{flag} needs --val_dataroot (the best checkpoints are chosen by validation)")
    if not opt.val_dataroot:
        return None
    if opt.val_freq < 1 or opt.val_max < 1:
        raise UserError(f"--val_freq {opt.val_freq} --val_max {opt.val_max}: both must be at least 1")
    val_opt = validation_options(opt)
    find_dataset_using_name(opt.dataset_mode).check_test_options(val_opt, prefix="--val_")
    root = opt.val_dataroot
    if not os.path.isdir(root):
        raise UserError(f"--val_dataroot {root}: folder not found")
    # Any test-set layout test.py reads (data/layouts.py); none found is a UserError listing them.
    dataset = open_test_set(val_opt)
    used = range(min(opt.val_max, len(dataset)))
    missing = [dataset.pairs[k].input for k in used if dataset.pairs[k].gt is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]}: validation input without a ground truth (for testB/, in testA1/ with the "
                        f"same name, any image extension){more}; validation needs one for every input")
    if distributed.is_main_process():
        print(f"validation: the first {len(used)} of {len(dataset)} images of {root}, every {opt.val_freq} "
              f"epoch(s) and after the last; {dataset.size_policy()}")
    return dataset


def validate(model: BaseModel, dataset: BaseDataset, opt: argparse.Namespace) -> ValResult:
    """Return the mean scores of the first --val_max images, run in eval mode (train mode restored after) with the
    model's averaged weights where it keeps an EMA (its own weights restored after).

    Undecodable images are skipped with one warning each and listed; the training RNG streams are left
    untouched, so a run trains the same with or without validation. cuDNN's benchmark mode, which training
    turns on for its fixed crop size, is off meanwhile: validation images come in many sizes, and each new one
    would be autotuned (time, and trial memory on top of the training state).
    """
    start = time.time()
    skipped: list[str] = []
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), model.averaged_weights():
            scores = [r.scores for r in run_test_set(model, dataset, opt.val_max, opt.psnr, skip_bad=True,
                                                     skipped=skipped, scored_only=True)]
    finally:
        model.train()
        torch.backends.cudnn.benchmark = benchmark
    return ValResult(mean_scores(scores), len(scores), skipped, time.time() - start)


class Validator:
    """Runs validation at epoch ends, logs it and keeps the best checkpoint (and the K best)."""

    def __init__(self, opt: argparse.Namespace, dataset: BaseDataset, model: BaseModel):
        self.opt = opt
        self.dataset = dataset
        self.model = model
        self.labels = model.roles.labels
        self.key = f"PSNR_{model.roles.result}"  # what 'best' and the plateau policy follow
        self.log_path = os.path.join(model.save_dir, "val_log.csv")
        self.best = -math.inf
        self.last: ValResult | None = None  # the latest validation (rank 0 only)
        self.extra: dict = {}  # recorded in 'best' training states beside the best value (the W&B run id)
        self.kept = retention.BestCheckpoints(model.save_dir, self.key, opt.keep_best) if opt.keep_best else None
        if not opt.continue_train and distributed.is_main_process():
            if os.path.isfile(self.log_path):
                os.remove(self.log_path)  # a new run starts a new log; a resumed run appends
            if self.kept is not None:
                self.kept.start()

    def resume(self, epochs_done: int) -> None:
        """Continue the log and the best value of a run resumed after epochs_done epochs; return None.

        Rows of later epochs (a resume from an earlier checkpoint) leave val_log.csv: those epochs are
        validated again. The best value so far comes from the best checkpoint's training state, so a worse
        one never replaces it, unless that checkpoint is from a later epoch than the resumed one.
        """
        main_process = distributed.is_main_process()
        if main_process:
            dropped = truncate_val_log(self.log_path, epochs_done)
            if dropped:
                print(f"{self.log_path}: {dropped} row(s) after epoch {epochs_done} dropped (validated again)")
            if self.kept is not None:
                gone = self.kept.resume(epochs_done)
                if gone:
                    print(f"{self.kept.path}: best_epoch checkpoint(s) of epoch(s) {', '.join(map(str, gone))} "
                          f"removed (after epoch {epochs_done}, or beyond --keep_best {self.opt.keep_best})")
        if self.opt.save_best:
            best_epoch = checkpoint.saved_epoch(self.model, BEST)
            if best_epoch is not None and best_epoch > epochs_done:
                if main_process:
                    print(f"note: the best checkpoint is from epoch {best_epoch}, after the resumed one: the next "
                          "validation replaces it")
                return
            self.best = float(checkpoint.load_extra(self.model, BEST).get(self.key, -math.inf))
            if self.best > -math.inf and main_process:
                print(f"best so far: {self.key} {self.best:.4f} "
                      f"({checkpoint.training_state_path(self.model.save_dir, BEST)})")

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Return True when this epoch ends with a validation (every --val_freq epochs, and the last)."""
        return epoch % self.opt.val_freq == 0 or epoch == last_epoch

    def run(self, epoch: int, total_iters: int, lr: float) -> float:
        """Return the mean PSNR of the result (the same on every rank): validated on rank 0, logged, printed,
        'best' saved; the other ranks wait and receive it."""
        value = math.nan
        if distributed.is_main_process():
            result = self.last = validate(self.model, self.dataset, self.opt)
            values = flat(result.scores, self.labels) if result.scores else [math.nan] * 2 * len(self.labels)
            row = {"epoch": epoch, "samples": total_iters * self.opt.world_size, "lr": float(lr),
                   "seconds": round(result.seconds, 3), "images": result.images,
                   **{c: float(v) for c, v in zip(metric_columns(self.labels), values)}}
            append_val_row(self.log_path, row, self.labels)
            value = row[self.key]
            better = self.opt.save_best and value > self.best  # False for NaN
            if better:
                self.best = value
                checkpoint.save(self.model, BEST, epoch, total_iters, extra={**self.extra, self.key: value})
            kept = self.kept is not None and self.kept.offer(self.model, epoch, total_iters, value, self.extra)
            skipped = f", {len(result.skipped)} undecodable skipped" if result.skipped else ""
            roles = self.model.roles
            print(f"validation after epoch {epoch}: {roles.result} PSNR {value:.2f} SSIM "
                  f"{row[f'SSIM_{roles.result}']:.4f} (input {row[f'PSNR_{roles.input}']:.2f} "
                  f"{row[f'SSIM_{roles.input}']:.4f}) on {result.images} image(s){skipped} in "
                  f"{result.seconds:.1f} s" + (" [best so far: saved 'best']" if better else "")
                  + (f" [among the {self.opt.keep_best} best: kept {retention.best_prefix(epoch)}]" if kept else ""))
        return distributed.broadcast_value(value, self.model.device)


def val_table(path: str) -> str:
    """Return a val_log.csv as a console table: epoch, samples, images and every PSNR/SSIM column."""
    records = read_val_rows(path)
    metrics = [c for c in (records[0] if records else {}) if c.startswith(("PSNR_", "SSIM_"))]
    columns = ["epoch", "samples", "images", *metrics]
    rows = [[r[c] if c in VAL_FIXED else metric_cell(c, float(r[c])) for c in columns] for r in records]
    return text_table(columns, rows)


def main(argv: list[str]) -> None:
    """Print the table of a val_log.csv given on the command line."""
    if len(argv) != 1 or not os.path.isfile(argv[0]):
        sys.exit("usage: python -m evaluation.validation checkpoints/<name>/val_log.csv")
    print(val_table(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
