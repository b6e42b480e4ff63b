"""Flags of train.py: display, saving, schedule and optimiser (defaults of the released IBCLN recipe)."""

from __future__ import annotations

import argparse
import os

from models import checkpoint
from util import distributed, run_lock
from util.errors import UserError

from .base_options import BaseOptions


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
