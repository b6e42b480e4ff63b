"""Flags shared by training and testing (the pix2pix-family set, with IBCLN's defaults), and --config.

Models and datasets add their own flags through ``modify_commandline_options``; the parser is
built in passes so that ``--model`` and ``--dataset_mode`` (on the command line or in the --config
file, options/config_file.py) can pick which ones apply.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

import torch

import data
import models
from util import distributed
from util.devices import parse_gpu_ids
from util.errors import UserError, exit_on_user_error
from util.seeding import seed_everything

from . import config_file

DEFAULT_NAME = "experiment_name"


class BaseOptions:
    """Builds, prints and saves the options of one run."""

    is_train = False
    needs_dataroot = True  # evaluate.py names its folders with --sets instead
    several_runs = False  # evaluate.py: --name and --epoch take several values (every name at every epoch)

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Return the parser with the flags shared by train.py and test.py."""
        parser.add_argument("--config", type=str, default="", metavar="FILE.yaml",
                            help="read flags from this YAML file, one 'name: value' per line (e.g. crop_size: 64, "
                                 "no_flip: true; docs/training.md#config-files); flags on the command line override "
                                 "it. The defaults listed here are the built-in ones, not the file's")
        # basic parameters
        parser.add_argument("--dataroot", required=self.needs_dataroot, default="",
                            help="folder holding trainA1/trainA2[/natural_T/natural_I] or testB[/testA1]")
        runs = "+" if self.several_runs else None
        several = " (several: each is evaluated, e.g. runs with different seeds)" if self.several_runs else ""
        parser.add_argument("--name", type=str, default=DEFAULT_NAME, nargs=runs,
                            help="name of the experiment: where checkpoints and results are stored" + several)
        parser.add_argument("--gpu_ids", type=str, default="0",
                            help="GPU ids, e.g. 0  0,1,2  or -1 for the CPU")
        parser.add_argument("--checkpoints_dir", type=str, default="./checkpoints", help="models are saved here")
        parser.add_argument("--seed", type=int, default=None,
                            help="seed python, numpy, torch and every random draw of the training data (the same "
                                 "samples whatever --num_threads is); unset = training draws a seed at random, "
                                 "prints it and keeps it in the checkpoints")
        parser.add_argument("--deterministic", action="store_true",
                            help="deterministic algorithms and no cuDNN benchmark mode, so that a GPU run with "
                                 "--seed repeats bit for bit (slower; docs/gpu.md)")
        parser.add_argument("--tf32", default="auto", choices=["auto", "on", "off"],
                            help="TF32 for fp32 convolutions and matrix products on GPUs from Ampere on (10-bit "
                                 "mantissa, faster); auto = on, off with --deterministic (strict fp32; docs/gpu.md)")
        # model parameters
        parser.add_argument("--model", type=str, default="ibcln", help="which model to use (case-insensitive)")
        parser.add_argument("--input_nc", type=int, default=3, help="channels of an input image")
        parser.add_argument("--output_nc", type=int, default=3, help="channels of an output image")
        parser.add_argument("--ngf", type=int, default=64, help="generator filters in the first conv layer")
        parser.add_argument("--ndf", type=int, default=64, help="discriminator filters in the first conv layer")
        parser.add_argument("--netD", type=str, default="basic", help="discriminator architecture [basic]")
        parser.add_argument("--netG", type=str, default="gen_drop", help="generator architecture [gen_drop]")
        parser.add_argument("--n_layers_D", type=int, default=3, help="layers of the PatchGAN discriminator")
        parser.add_argument("--norm", type=str, default="instance",
                            help="discriminator normalisation [instance | batch | none]")
        parser.add_argument("--init_type", type=str, default="normal",
                            help="weight init [normal | xavier | kaiming | orthogonal]")
        parser.add_argument("--init_gain", type=float, default=0.02, help="scale for normal, xavier and orthogonal")
        parser.add_argument("--no_dropout", action="store_true", help="no dropout in the generators")
        # dataset parameters
        parser.add_argument("--dataset_mode", type=str, default="resize_natural_3", help="which dataset to use")
        parser.add_argument("--serial_batches", action="store_true",
                            help="take images in order to make batches, otherwise randomly")
        parser.add_argument("--num_threads", default=4, type=int, help="data loading worker processes")
        parser.add_argument("--batch_size", type=int, default=2, help="input batch size")
        parser.add_argument("--load_size", type=int, default=256, help="scale images to this size")
        parser.add_argument("--crop_size", type=int, default=256, help="then crop to this size")
        parser.add_argument("--max_dataset_size", type=float, default=float("inf"),
                            help="at most this many images are read from each folder")
        parser.add_argument("--preprocess", type=str, default="resize_and_crop",
                            help="[resize_and_crop | crop | scale_width | scale_width_and_crop | none]; "
                                 "'' at test time = only round H and W down to multiples of 4")
        parser.add_argument("--no_flip", action="store_true", help="do not flip images for data augmentation")
        parser.add_argument("--display_winsize", type=int, default=256, help="display window size (visdom, HTML)")
        # additional parameters
        parser.add_argument("--epoch", type=str, default="latest", nargs=runs,
                            help="which checkpoint to load: latest, final, or an epoch number" + several)
        parser.add_argument("--load_iter", type=int, default=0,
                            help="if > 0, load the checkpoint saved at this iteration (iter_<n>) instead of --epoch")
        parser.add_argument("--verbose", action="store_true", help="print the networks")
        parser.add_argument("--psnr", type=str, default="bandwise", choices=["bandwise", "pooled"],
                            help="PSNR protocol of test, validation and evaluation: bandwise = per RGB channel, "
                                 "averaged (the literature's); pooled = over all channels at once (for comparison)")
        parser.add_argument("--suffix", default="", type=str,
                            help="appended to --name, e.g. {model}_{netG}_size{load_size}")
        return parser

    def make_parser(self, model: str | None = None, dataset_mode: str | None = None,
                    add_help: bool = False) -> argparse.ArgumentParser:
        """Return the parser of this command's flags, with model's and then dataset_mode's own flags when named."""
        parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter, add_help=add_help)
        parser = self.initialize(parser)
        try:
            if model is not None:
                parser = models.get_option_setter(model)(parser, self.is_train)
            if dataset_mode is not None:
                parser = data.get_option_setter(dataset_mode)(parser, self.is_train)
        except UserError as err:
            parser.error(str(err))
        return parser

    def gather_options(self, args: list[str] | None = None) -> argparse.Namespace:
        """Return the parsed options (--config's file under the command line), with the chosen model's and
        dataset's flags added; --help lists every flag of that model and dataset."""
        args = sys.argv[1:] if args is None else list(args)
        path = config_file.parse(self.make_parser(), args, {}, "", complete=False).config
        values = self.screen(args, config_file.read(path) if path else {}, path)
        model = config_file.parse(self.make_parser(), args, values, path, complete=False).model
        dataset_mode = config_file.parse(self.make_parser(model), args, values, path, complete=False).dataset_mode
        parser = self.make_parser(model, dataset_mode, add_help=True)
        self.parser = parser
        return config_file.parse(parser, args, values, path, complete=True,
                                 selected=f"with --model {model} --dataset_mode {dataset_mode}")

    def screen(self, args: list[str], values: dict[str, Any], path: str) -> dict[str, Any]:
        """Return the config file's values to parse; raise a UserError for a flag this command refuses.

        Subclasses add their rules; it runs before anything is parsed.
        """
        return values

    def format_options(self, opt: argparse.Namespace) -> str:
        """Return the options as a table, marking values that differ from the default."""
        lines = ["----------------- Options ---------------"]
        for key, value in sorted(vars(opt).items()):
            default = self.parser.get_default(key)
            note = f"\t[default: {default}]" if value != default else ""
            lines.append(f"{key:>25}: {str(value):<30}{note}")
        lines.append("----------------- End -------------------")
        return "\n".join(lines)

    def check(self, opt: argparse.Namespace, save: bool) -> None:
        """Raise a UserError for options that cannot work together, or (save) a run that must not write.

        Subclasses add their rules; it runs before <phase>_opt.txt is written.
        """

    def options_dir(self, opt: argparse.Namespace) -> str:
        """Return the folder that receives <phase>_opt.txt: checkpoints/<name>."""
        return os.path.join(opt.checkpoints_dir, opt.name)

    def uses_device(self, opt: argparse.Namespace) -> bool:
        """Return True when the run needs --gpu_ids checked (False: it runs no network and stays on the CPU)."""
        return True

    def parse(self, args: list[str] | None = None, save: bool = True) -> argparse.Namespace:
        """Return the options of this run: parsed, checked, printed and saved to <phase>_opt.txt.

        Also makes the run's process-wide settings: cuDNN and deterministic modes (select_kernels), the
        current GPU, and the seeds of --seed.
        """
        opt = self.gather_options(args)
        opt.is_train = self.is_train
        if opt.suffix:
            opt.name = opt.name + "_" + opt.suffix.format(**vars(opt))
        opt.gpu_ids = parse_gpu_ids(opt.gpu_ids) if self.uses_device(opt) else []
        self.check(opt, save)
        if opt.gpu_ids:
            distributed.select_gpu(opt.gpu_ids)  # under torchrun, each rank's first line names its GPU
        text = self.format_options(opt)
        main_process = distributed.is_main_process()  # torchrun: only rank 0 prints and saves
        if main_process:
            print(text)
        if save and main_process:
            path = os.path.join(self.options_dir(opt), f"{opt.phase}_opt.txt")
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text + "\n")
            except OSError as err:
                raise UserError(f"{path}: cannot be written ({err.strerror or err})") from None
        # Only test.py and evaluate.py have --tile.
        select_kernels(opt.deterministic, bool(opt.gpu_ids), opt.is_train or bool(getattr(opt, "tile", 0)), opt.tf32)
        if opt.seed is not None:
            seed_everything(opt.seed, distributed.rank())  # torchrun: each rank its own stream
        self.opt = opt
        return opt


def select_kernels(deterministic: bool, cuda: bool, fixed_sizes: bool, tf32: str = "auto") -> None:
    """Set cuDNN's benchmark mode, TF32 and torch's deterministic mode for a run (returns nothing).

    Benchmark mode times every convolution algorithm once per input size and keeps the fastest: worth it on
    CUDA for fixed sizes (training's crops, --tile's equal tiles), not for test images of many sizes, where
    each new size is timed again and the trial workspaces inflate the peak memory. deterministic
    (--deterministic) turns it off and makes torch use deterministic algorithms (bit-identical GPU runs,
    somewhat slower). tf32 (--tf32; auto = on, except with --deterministic, which is strict fp32) lets fp32
    convolutions and matrix products round their inputs to TF32 on Ampere and later GPUs (docs/gpu.md);
    torch's own defaults differ between the two. These settings are global to the process: the drivers make
    them (BaseOptions.parse); a model, and so the Python API, leaves them alone.
    """
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = (
        tf32 == "on" or (tf32 == "auto" and not deterministic))
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this when its first handle is created.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cuda and fixed_sizes and not deterministic


def run_cli(main, options: BaseOptions) -> None:
    """Parse the options, then run ``main(opt)``; a UserError ends the program with a one-line message.

    Warnings are printed as ``warning: <message>``, without Python's file:line prefix and source line.
    """
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    exit_on_user_error(lambda: main(options.parse()))
