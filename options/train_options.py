"""Flags of train.py: display, saving, schedule and optimiser (defaults of the released IBCLN recipe)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from models import checkpoint
from util import distributed, run_lock
from util.errors import UserError

from . import config_file
from .base_options import BaseOptions

# The config a training run saves, beside train_opt.txt; `train.py --config` with it repeats the run.
CONFIG_NAME = "config.yaml"
# Flags a saved config leaves out: they say how one start treats the checkpoint folder, not what the run is
# (repeating them blindly would resume, or replace, the run instead of repeating it).
NOT_REPEATED = ("continue_train", "overwrite")
# Flags that say where a start begins (the checkpoint it loads, its first epoch's number): a resume gives them other
# values than the first start without changing the run.
START_FLAGS = ("epoch", "load_iter", "epoch_count")
# test.py's size flags (the dataset's) and their twins that size validation during training (evaluation/validation.py
# reads each twin as its test flag). train.py refuses the test flags, which would change nothing in training.
VAL_TWINS = {"keep_size": "val_keep_size", "align": "val_align", "max_size": "val_max_size"}


def auto_only(text: str) -> str:
    """Return the value of --continue_train when given one: auto (an argparse type)."""
    if text != "auto":
        raise argparse.ArgumentTypeError(f"'{text}': --continue_train takes no value or 'auto'; the checkpoint to "
                                         "resume is --epoch")
    return text


class TrainOptions(BaseOptions):
    """Options for training."""

    is_train = True

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the shared flags and the training flags."""
        parser = BaseOptions.initialize(self, parser)
        # visdom and HTML visualisation
        parser.add_argument("--display_freq", type=int, default=400, help="show results every N samples")
        parser.add_argument("--display_id", type=int, default=1, help="visdom window id; <= 0 disables visdom")
        parser.add_argument("--display_server", type=str, default="http://localhost", help="visdom server")
        parser.add_argument("--display_env", type=str, default="main", help="visdom environment")
        parser.add_argument("--display_port", type=int, default=8097, help="visdom port")
        parser.add_argument("--update_html_freq", type=int, default=1000, help="save results to HTML every N samples")
        parser.add_argument("--print_freq", type=int, default=100, help="print losses every N samples")
        parser.add_argument("--no_html", action="store_true", help="do not write checkpoints/<name>/web/")
        # experiment trackers (training/trackers.py; optional packages)
        parser.add_argument("--tensorboard", action="store_true",
                            help="log losses, learning rate, samples/s, validation scores and the cascade grid to "
                                 "checkpoints/<name>/tensorboard/ (needs the tensorboard package)")
        parser.add_argument("--wandb", type=str, default="", metavar="PROJECT",
                            help="log the same to this Weights & Biases project (needs the wandb package; "
                                 "WANDB_MODE=offline keeps it on this machine); '' = off")
        # saving and loading
        parser.add_argument("--save_latest_freq", type=int, default=5000, help="save 'latest' every N samples")
        parser.add_argument("--save_epoch_freq", type=int, default=5, help="save checkpoints every N epochs; 0 = never")
        parser.add_argument("--save_by_iter", action="store_true", help="also keep a checkpoint per save (iter_<n>)")
        parser.add_argument("--keep_last", type=int, default=0, metavar="N",
                            help="keep only the N latest epoch checkpoints (<epoch>_*, --save_epoch_freq); 0 = all. "
                                 "latest, final, best and best_epoch<N> are never removed")
        parser.add_argument("--continue_train", nargs="?", const=True, default=False, type=auto_only, metavar="auto",
                            help="resume from --epoch (networks, optimisers, schedulers, counters, RNG states); "
                                 "'--continue_train auto' resumes from 'latest' when it has a training state and "
                                 "starts a new run when the folder holds no checkpoint (jobs that restart "
                                 "themselves, docs/cluster.md)")
        parser.add_argument("--overwrite", action="store_true",
                            help="start afresh in checkpoints/<name> even if it holds checkpoints (they are replaced)")
        parser.add_argument("--pretrained_dir", type=str, default="",
                            help="fine-tune: start the generators from <dir>/<--epoch>_net_G_T.pth and _G_R.pth (e.g. "
                                 "the authors' release), with a fresh discriminator (unless <dir> has one) and fresh "
                                 "optimisers, at epoch --epoch_count")
        parser.add_argument("--epoch_count", type=int, default=1,
                            help="first epoch number (taken from the training state when resuming)")
        parser.add_argument("--phase", type=str, default="train", help="train, val, test, ...")
        # validation during training (evaluation/validation.py)
        parser.add_argument("--val_dataroot", type=str, default="",
                            help="validate on this folder's testB/ inputs and testA1/ ground truths (test.py's "
                                 "layout) at epoch ends, logging checkpoints/<name>/val_log.csv; '' = no validation")
        parser.add_argument("--val_freq", type=int, default=1, help="validate every N epochs (and after the last)")
        parser.add_argument("--val_max", type=int, default=50, help="validate on the first N images in sorted order")
        parser.add_argument("--val_keep_size", action="store_true",
                            help="validate at the original size (test.py --keep_size); default: inputs resized "
                                 "down to a multiple of 4, test.py's default")
        parser.add_argument("--val_align", type=int, default=0, metavar="N",
                            help="validate with input and ground truth resized to multiples of N (test.py "
                                 "--align, e.g. 32); 0 = off")
        parser.add_argument("--val_max_size", type=int, default=0,
                            help="downscale validation inputs whose longer side exceeds N (test.py --max_size); "
                                 "0 = never")
        parser.add_argument("--save_best", action="store_true",
                            help="keep best_net_*.pth + best_train_state.pth for the highest validation T_3 PSNR")
        parser.add_argument("--keep_best", type=int, default=0, metavar="K",
                            help="keep the checkpoints of the K epochs with the highest validation T_3 PSNR as "
                                 "best_epoch<N>_*, listed with their scores in best_checkpoints.json; 0 = off")
        parser.add_argument("--ema_decay", type=float, default=0.0, metavar="D",
                            help="keep an exponential moving average of G_T's and G_R's weights with this decay "
                                 "(e.g. 0.999), saved as <prefix>_net_G_T_ema.pth / _G_R_ema.pth and validated "
                                 "instead of the training weights; 0 = off")
        # schedule and optimiser
        parser.add_argument("--niter", type=int, default=80, help="epochs at the starting learning rate")
        parser.add_argument("--niter_decay", type=int, default=0, help="epochs to decay the learning rate to zero")
        parser.add_argument("--beta1", type=float, default=0.5, help="Adam momentum term")
        parser.add_argument("--lr", type=float, default=0.0002, help="initial Adam learning rate")
        parser.add_argument("--gan_mode", type=str, default="lsgan", help="GAN objective [lsgan | vanilla]")
        parser.add_argument("--lr_policy", type=str, default="linear",
                            help="learning rate policy [linear | step | plateau | cosine]; plateau follows the "
                                 "validation PSNR of the result (needs --val_dataroot)")
        parser.add_argument("--lr_decay_iters", type=int, default=50,
                            help="step policy: multiply by 0.1 every N epochs")
        return parser

    def screen(self, args: list[str], values: dict[str, Any], path: str) -> dict[str, Any]:
        """Refuse test.py's size flags, naming their --val_* twins; return the config file's values without them where
        they hold their defaults (every config.yaml saved before train.py stopped taking them does)."""
        for flag, twin in VAL_TWINS.items():
            if any(arg == f"--{flag}" or arg.startswith(f"--{flag}=") for arg in args):
                raise UserError(f"--{flag} sizes test.py's images; in training, --{twin} sizes the validation images")
            if flag in values and values[flag] not in (False, 0):
                raise UserError(f"{path}: {flag} sizes test.py's images; in training, {twin} sizes the validation "
                                "images")
        return {key: value for key, value in values.items() if key not in VAL_TWINS}

    def check(self, opt: argparse.Namespace, save: bool) -> None:
        """Refuse flags that contradict each other and a new run over an existing one (before anything is written)."""
        if opt.save_epoch_freq < 0:
            raise UserError(f"--save_epoch_freq {opt.save_epoch_freq}: use a positive number, or 0 for never")
        for flag in ("keep_best", "keep_last"):
            if getattr(opt, flag) < 0:
                raise UserError(f"--{flag} {getattr(opt, flag)}: use a positive number, or 0 for off")
        if opt.keep_last and not opt.save_epoch_freq:
            raise UserError(f"--keep_last {opt.keep_last} prunes the epoch checkpoints of --save_epoch_freq, which "
                            "is 0 (none are saved): drop --keep_last or set --save_epoch_freq")
        if opt.lr_policy == "plateau" and not opt.val_dataroot:
            raise UserError("--lr_policy plateau lowers the learning rate when the validation PSNR stops rising: it "
                            "needs --val_dataroot")
        if opt.pretrained_dir and opt.continue_train is True:
            raise UserError("--pretrained_dir starts a new run from given generators; --continue_train resumes "
                            "this run: use one of them")
        if opt.continue_train == "auto" and (opt.epoch != "latest" or opt.load_iter > 0):
            raise UserError("--continue_train auto always resumes from 'latest': drop --epoch and --load_iter")
        run_dir = os.path.join(opt.checkpoints_dir, opt.name)
        # Refused before train_opt.txt is written (by rank 0, which says it once); the run itself takes the lock.
        holder = run_lock.blocking_holder(run_dir) if save and distributed.is_main_process() else None
        if holder is not None:
            raise UserError(run_lock.refusal(run_dir, holder))
        existing = checkpoint.network_files(run_dir)
        if save and existing and not opt.continue_train and not opt.overwrite:
            raise UserError(f"{run_dir} already holds checkpoints (e.g. {os.path.basename(existing[0])}): resume "
                            "it with --continue_train, choose another --name, or pass --overwrite to replace them")


def run_config(opt: argparse.Namespace) -> dict:
    """Return the flags that repeat this training run: every flag of train.py with the run's value (--name with its
    --suffix, the seed it trains with, --gpu_ids as it uses them), except --config and NOT_REPEATED."""
    parser = TrainOptions().make_parser(opt.model, opt.dataset_mode)
    values = {key: getattr(opt, key) for key in config_file.flags(parser) if key not in NOT_REPEATED}
    values["suffix"] = ""  # already part of name
    values["gpu_ids"] = ",".join(map(str, opt.gpu_ids)) or "-1"
    return values


def record_config(opt: argparse.Namespace) -> None:
    """Write checkpoints/<name>/config.yaml for a new run; a resumed run keeps the first start's file and prints the
    flags where it differs from it (train_opt.txt has this start's). Rank 0 only; return None."""
    if not distributed.is_main_process():
        return
    path = os.path.join(opt.checkpoints_dir, opt.name, CONFIG_NAME)
    values = run_config(opt)
    if not opt.continue_train:
        config_file.write(path, values, f"train.py options of the run '{opt.name}' (docs/training.md#config-files).\n"
                                        f"Repeat it: python train.py --config {path} --name NEW_NAME")
        return
    if not os.path.isfile(path):  # a run started before config files were saved
        return
    try:
        # Read as train.py reads it (types, lists), leniently: the note must not stop a resume.
        parser = TrainOptions().make_parser(opt.model, opt.dataset_mode)
        saved = vars(config_file.parse(parser, [], config_file.read(path), path, complete=False))
    except UserError as err:
        print(f"note: {err}: not compared with this start's options")
        return
    changed = [f"{key} {saved[key]} -> {value}" for key, value in values.items()
               if key not in START_FLAGS and saved[key] != value]
    if changed:
        print(f"note: {path} keeps the options the run was started with; this start differs in "
              f"{', '.join(changed)} (its options are in train_opt.txt)")
