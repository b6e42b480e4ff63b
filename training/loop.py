"""The training loop behind train.py.

Epochs run from --epoch_count to --niter + --niter_decay. Every checkpoint save writes the networks
(<prefix>_net_<G_T|G_R|D>.pth) and a training state (<prefix>_train_state.pth) so that
--continue_train resumes exactly; 'latest' is saved at the end of every epoch, every --save_latest_freq
samples and on Ctrl-C or SIGTERM; '<epoch>' every --save_epoch_freq epochs (0 = never); 'final' when
training ends. On a terminal a progress bar shows every step; in a log file (stdout not a terminal: nohup,
SLURM) only the --print_freq lines are written, with losses averaged since the last line and an ETA.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections import OrderedDict

import torch
from tqdm import tqdm

from data import create_dataset
from evaluation.validation import Validator, open_validation_set
from models import checkpoint, create_model
from models.base_model import NonFiniteLossError
from pages.display import Visualizer
from util import distributed, signals
from util.errors import UserError


def crossed(total: int, step: int, freq: int) -> bool:
    """Return True if the sample counter passed a multiple of freq in its last increase by step."""
    return freq > 0 and total // freq > (total - step) // freq


class LossMeter:
    """Sums losses between two --print_freq lines (on the device) and estimates the time the run still needs."""

    def __init__(self, samples_to_do: int):
        self.samples_to_do = samples_to_do
        self.samples_done = 0
        self.start = time.time()
        self.total: torch.Tensor | None = None
        self.steps = 0

    def add(self, values: torch.Tensor, batch: int) -> None:
        """Count one training step of batch samples with its loss values (a tensor, left where it is)."""
        self.total = values if self.total is None else self.total + values
        self.steps += 1
        self.samples_done += batch

    def pop_means(self) -> torch.Tensor:
        """Return the mean loss values since the last call (still on the device), and start a new average."""
        means = self.total / max(self.steps, 1)
        self.total, self.steps = None, 0
        return means

    def eta(self) -> str:
        """Return the estimated time left for the whole run, as H:MM:SS."""
        left = max(self.samples_to_do - self.samples_done, 0)
        seconds = (time.time() - self.start) / max(self.samples_done, 1) * left
        return str(datetime.timedelta(seconds=round(seconds)))


def main(opt: argparse.Namespace) -> None:
    """Train as the options say (in each process, when started by torchrun)."""
    distributed.setup(opt)
    try:
        train(opt)
        distributed.barrier()  # every rank done before any tears gloo/nccl down (one leaving early can abort another)
    finally:
        distributed.cleanup()


def train(opt: argparse.Namespace) -> None:
    """Train from opt.epoch_count to niter + niter_decay, saving checkpoints along the way."""
    main_process = distributed.is_main_process()
    signals.install_sigterm_handler()
    show_bar = main_process and sys.stdout.isatty()
    loader = create_dataset(opt)
    samples_per_epoch = len(loader.sampler)  # this process's share under torchrun
    val_set = open_validation_set(opt)
    model = create_model(opt)
    model.setup(opt)
    total_iters = checkpoint.resume(model, opt) if opt.continue_train else 0
    validator = Validator(opt, val_set, model) if val_set is not None else None
    if validator and opt.continue_train:
        validator.resume()
    visualizer = Visualizer(opt, model.roles, enabled=main_process)
    last_epoch = opt.niter + opt.niter_decay
    epochs_done = opt.epoch_count - 1
    meter = LossMeter(samples_per_epoch * (last_epoch - epochs_done))
    try:
        for epoch in range(opt.epoch_count, last_epoch + 1):
            visualizer.reset()
            if opt.distributed:
                loader.sampler.set_epoch(epoch)
            bar = tqdm(total=samples_per_epoch, desc=f"epoch {epoch}/{last_epoch}", unit="img", dynamic_ncols=True,
                       disable=not show_bar)
            epoch_iter = 0
            epoch_start = time.time()
            shown = ""  # the losses last printed, repeated in the progress bar
            t_data_start = time.time()
            for data in loader:
                t_data = time.time() - t_data_start
                t_comp_start = time.time()
                batch = data["I"].shape[0]
                total_iters += batch
                epoch_iter += batch
                model.set_input(data)
                try:
                    model.optimize_parameters()
                except NonFiniteLossError as err:
                    bar.close()  # ends the progress bar's line, so that the error has a line of its own
                    raise UserError(f"{err} at epoch {epoch}, sample {total_iters}: training stopped; the last "
                                    f"saved checkpoint in {model.save_dir} is intact") from None
                t_comp = time.time() - t_comp_start
                meter.add(model.current_loss_values(), batch)  # stays on the device: no wait for the GPU
                if crossed(total_iters, batch, opt.display_freq):
                    save_result = crossed(total_iters, batch, opt.update_html_freq)
                    visualizer.display_current_results(model.get_current_visuals(), epoch, save_result)
                if crossed(total_iters, batch, opt.print_freq):
                    # Loss values are read from the device only here: each read waits for the GPU.
                    means = OrderedDict(zip(model.loss_names, distributed.mean_over_ranks(meter.pop_means()).tolist()))
                    shown = " ".join(f"{k}={v:.3g}" for k, v in means.items()) + " "
                    message = visualizer.print_current_losses(epoch, epoch_iter, means, t_comp / batch, t_data,
                                                              samples=total_iters)
                    if main_process:
                        bar.write(f"{message} eta: {meter.eta()}", file=sys.stdout)
                    visualizer.plot_current_losses(epoch, epoch_iter / samples_per_epoch, means)
                if crossed(total_iters, batch, opt.save_latest_freq):
                    if main_process:
                        bar.write(f"saving the latest model (epoch {epoch}, total_iters {total_iters})")
                    checkpoint.save(model, "latest", epochs_done, total_iters)
                    if opt.save_by_iter:
                        checkpoint.save(model, f"iter_{total_iters}", epochs_done, total_iters)
                bar.set_postfix_str(f"{shown}data={t_data:.2f}s comp={t_comp:.2f}s")
                bar.update(batch)
                t_data_start = time.time()
            bar.close()
            epoch_seconds = time.time() - epoch_start
            epoch_lr = model.optimizers[0].param_groups[0]["lr"]
            lr = model.update_learning_rate()
            epochs_done = epoch
            if main_process:
                # Training time only (the loop above), comparable with the validation line's seconds.
                print(f"end of epoch {epoch} / {last_epoch} ({epoch_seconds:.1f} s); learning rate = {lr:.7f}")
            if validator and validator.due(epoch, last_epoch):
                value = validator.run(epoch, total_iters, epoch_lr)
                visualizer.plot_validation(epoch, value)
                if opt.lr_policy == "plateau":
                    lr = model.update_learning_rate(value)
                    if main_process:
                        print(f"plateau policy: learning rate = {lr:.7f} after a validation {validator.key} of "
                              f"{value:.4f}")
            # Saved after validation, so that the plateau policy's step on it is part of the saved state.
            checkpoint.save(model, "latest", epoch, total_iters)
            if opt.save_epoch_freq > 0 and epoch % opt.save_epoch_freq == 0:
                checkpoint.save(model, str(epoch), epoch, total_iters)
            if main_process:
                visualizer.write_training_page()
    except KeyboardInterrupt as stop:
        signals.ignore_sigterm()  # a second SIGTERM must not cut the save short
        terminated = isinstance(stop, signals.Terminated)
        cause = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"\n{cause}: saving 'latest' (--continue_train restarts at epoch {epochs_done + 1})", flush=True)
        checkpoint.save(model, "latest", epochs_done, total_iters)
        raise SystemExit(143 if terminated else 130) from None
    checkpoint.save(model, "final", last_epoch, total_iters)
    if opt.distributed:
        difference = distributed.max_weight_difference(list(model.nets().values()))
        if main_process:
            print(f"DDP: {opt.world_size} processes, largest weight difference from rank 0: {difference:g}")
    if main_process:
        print(f"training done: checkpoints in {model.save_dir} (final, latest)")
