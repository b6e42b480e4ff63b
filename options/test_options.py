"""Flags of test.py: where results go, how many images, and the test-time network mode."""

from __future__ import annotations

import argparse
import os
import sys

from data.layouts import LAYOUTS
from util import distributed

from .base_options import BaseOptions


class TestOptions(BaseOptions):
    """Options for testing."""

    is_train = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the shared flags and the testing flags."""
        parser = BaseOptions.initialize(self, parser)
        parser.add_argument("--results_dir", type=str, default="./results/", help="results are saved here")
        parser.add_argument("--phase", type=str, default="test", help="train, val, test, ...")
        parser.add_argument("--eval", action="store_true",
                            help="accepted for compatibility: networks are in eval mode at test time by default")
        parser.add_argument("--dropout_at_test", action="store_true",
                            help="keep dropout active at test time, as the released test.sh did (random outputs)")
        parser.add_argument("--ema", action="store_true",
                            help="load the EMA weights <epoch>_net_G_T_ema.pth / _G_R_ema.pth that a run trained "
                                 "with --ema_decay saved (results go to <phase>_<epoch>_ema)")
        parser.add_argument("--num_test", type=float, default=float("inf"), help="test at most this many images")
        parser.add_argument("--skip_bad_images", action="store_true",
                            help="skip (with a warning) test images that cannot be decoded instead of stopping")
        parser.add_argument("--layout", type=str, default="auto", choices=["auto", *LAYOUTS],
                            help="layout of the test set (data/layouts.py): testB (testB/ + testA1/), blended "
                                 "(blended/ + transmission_layer/), sir2 (<scene>/m.* + g.*), ceilnet "
                                 "(<stem>-input.* + -label1.*), openrr1k (an OpenRR-1k split), rrw "
                                 "(<session>/GT_*/<scene>_GT.* + <session>/<scene>/*); auto = detect it")
        parser.add_argument("--pair_by", type=str, default="stem", choices=["stem", "sorted"],
                            help="pair inputs with ground truths by file name without extension, or by sorted "
                                 "order (the released code; the two folders must hold as many images)")
        parser.set_defaults(num_threads=0, batch_size=1, serial_batches=True, no_flip=True, preprocess="")
        return parser

    def check(self, opt: argparse.Namespace, save: bool) -> None:
        """Refuse a start by torchrun: testing runs one process on one device."""
        distributed.refuse_torchrun(os.path.basename(sys.argv[0]) or "test.py")

    def options_dir(self, opt: argparse.Namespace) -> str:
        """Return the results folder of the run (test_opt.txt goes there: checkpoints may be read-only)."""
        return results_folder(opt)


def results_folder(opt: argparse.Namespace) -> str:
    """Return the folder of a test run's results: <results_dir>/<name>/<phase>_<epoch>[_iter<n>][_ema]."""
    web_dir = os.path.join(opt.results_dir, opt.name, f"{opt.phase}_{opt.epoch}")
    web_dir = f"{web_dir}_iter{opt.load_iter}" if opt.load_iter > 0 else web_dir
    return f"{web_dir}_ema" if opt.ema else web_dir
