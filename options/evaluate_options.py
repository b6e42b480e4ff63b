"""Flags of evaluate.py: test.py's flags, with several test sets (--sets) and saved predictions (--pred)."""

from __future__ import annotations

import argparse

from .test_options import TestOptions


class EvaluateOptions(TestOptions):
    """test.py's options (every test flag works), with --sets instead of --dataroot, and the evaluation flags."""

    needs_dataroot = False  # each --sets entry is a dataroot

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the test flags and --sets, --json, --pred, --pred_suffix, --pred_resize."""
        parser = TestOptions.initialize(self, parser)
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
