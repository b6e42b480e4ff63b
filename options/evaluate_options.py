"""Flags of evaluate.py: test.py's flags, with several test sets (--sets), several checkpoints (--name and
--epoch take several values) and saved predictions (--pred); and how --sets and --pred are read."""

from __future__ import annotations

import argparse
import os
import re

from util.errors import UserError

from .base_options import DEFAULT_NAME
from .test_options import TestOptions, results_folder

SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Names no set may take: the report's average row and its description of the protocol and runs (evaluation/reports.py)
AVERAGE, ABOUT = "average", "evaluation"


class EvaluateOptions(TestOptions):
    """test.py's options (every test flag works), with --sets instead of --dataroot, and the evaluation flags."""

    needs_dataroot = False  # each --sets entry is a dataroot
    several_runs = True

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the test flags and --sets, --json, --pred, --pred_suffix, --pred_resize."""
        parser = TestOptions.initialize(self, parser)
        parser.add_argument("--sets", nargs="+", required=True, metavar="NAME=DIR",
                            help="the test sets: a name (letters, digits, _ . -) and a folder in any layout")
        parser.add_argument("--json", type=str, default="", help="also write the table as JSON to this file")
        parser.add_argument("--pred", nargs="+", default=None, metavar="[NAME=]DIR",
                            help="score saved predictions instead of running a model: one NAME=DIR per set "
                                 "(a bare DIR when there is one set); matched to ground truths by file stem. "
                                 "No network runs: --gpu_ids is ignored; results go to "
                                 "results/eval_pred_<prediction folder>/ (results/<name>/eval_pred/ with --name)")
        parser.add_argument("--pred_suffix", type=str, default="",
                            help="--pred: only files whose name (without extension) ends with this, removed "
                                 "before matching, e.g. _fake_Ts_03 for test.py's images/")
        parser.add_argument("--pred_resize", action="store_true",
                            help="--pred: resize predictions of another size to the ground truth's (bicubic) "
                                 "instead of stopping with an error")
        parser.set_defaults(phase="eval")
        return parser

    def gather_options(self, args: list[str] | None = None) -> argparse.Namespace:
        """Return the parsed options with names and epochs as lists and name, epoch the first of each."""
        opt = super().gather_options(args)
        opt.names, opt.epochs = listed(opt.name), listed(opt.epoch)
        opt.name, opt.epoch = opt.names[0], opt.epochs[0]
        return opt

    def check(self, opt: argparse.Namespace, save: bool) -> None:
        """Raise a UserError for a run list that cannot work (repeated, with --pred, --load_iter, --suffix or --ema)."""
        super().check(opt, save)
        if opt.suffix:  # parse added it to the first name only
            if len(opt.names) > 1:
                raise UserError(f"--suffix {opt.suffix} with several --name: give the full names instead")
            opt.names = [opt.name]
        for flag, values in (("--name", opt.names), ("--epoch", opt.epochs)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise UserError(f"{flag} {' '.join(values)}: {', '.join(repeated)} given twice")
        if opt.pred is not None and opt.ema:
            raise UserError("--ema loads a checkpoint's EMA weights, --pred scores saved predictions: drop one")
        if opt.pred is not None and len(opt.names) * len(opt.epochs) > 1:
            raise UserError("--pred scores saved predictions: give at most one --name and no list of --epoch")
        if opt.load_iter > 0 and len(opt.epochs) > 1:
            raise UserError(f"--load_iter {opt.load_iter} replaces --epoch: give one --epoch with it")

    def uses_device(self, opt: argparse.Namespace) -> bool:
        """Return False for --pred: it runs no network, so --gpu_ids is neither needed nor checked."""
        return opt.pred is None

    def options_dir(self, opt: argparse.Namespace) -> str:
        """Return the folder of the evaluation's summary page (eval_opt.txt goes there)."""
        return evaluation_folder(opt)


def listed(value: str | list[str]) -> list[str]:
    """Return a flag's values as a list (a default is a single string)."""
    return [value] if isinstance(value, str) else list(value)


def evaluation_folder(opt: argparse.Namespace) -> str:
    """Return the folder of evaluate.py's index.html (and eval_opt.txt).

    A checkpoint: results/<name>/eval_<epoch>[_iter<n>][_ema] (test.py's rule). Several: each run keeps that folder
    for its sets, and the summary goes to results/<name>[+<name>...]/eval_<epoch>[_<epoch>...][_iter<n>][_ema].
    --pred: results/<name>/eval_pred with --name, else results/eval_pred_<the prediction folder's name> (with
    several, of the folder holding them all).
    """
    if opt.pred is not None:
        if opt.name != DEFAULT_NAME:
            return os.path.join(opt.results_dir, opt.name, "eval_pred")
        return os.path.join(opt.results_dir, f"eval_pred_{prediction_tag(opt)}")
    if len(opt.names) == 1 and len(opt.epochs) == 1:
        return results_folder(opt)
    folder = os.path.join(opt.results_dir, "+".join(opt.names), "eval_" + "_".join(opt.epochs))
    folder = f"{folder}_iter{opt.load_iter}" if opt.load_iter > 0 else folder
    return f"{folder}_ema" if opt.ema else folder


def prediction_folders(pred: list[str], set_names: list[str]) -> list[str]:
    """Return the folder of each --pred entry: the DIR of NAME=DIR (NAME a set name), else the entry itself."""
    folders = []
    for entry in pred:
        name, sep, folder = entry.partition("=")
        folders.append(folder if sep and name in set_names else entry)
    return folders


def prediction_tag(opt: argparse.Namespace) -> str:
    """Return the name of the folder holding the --pred folders (the set names joined by '+' if it has none)."""
    set_names = [entry.partition("=")[0] for entry in opt.sets]
    folders = [os.path.abspath(f) for f in prediction_folders(opt.pred, set_names)]
    return os.path.basename(os.path.commonpath(folders)) or "+".join(set_names)


def parse_sets(entries: list[str]) -> dict[str, str]:
    """Return set name -> folder from NAME=DIR entries; a UserError for a malformed, repeated or missing one."""
    sets: dict[str, str] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if not sep or not folder or not SET_NAME.fullmatch(name):
            raise UserError(f"--sets {entry}: expected NAME=DIR, NAME made of letters, digits, _ . - "
                            "(e.g. nature=datasets/nature)")
        if name in (AVERAGE, ABOUT) or name in sets:
            raise UserError(f"--sets {entry}: the name '{name}' is " +
                            ("reserved (the average row, the JSON's description)" if name in (AVERAGE, ABOUT)
                             else "given twice"))
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
