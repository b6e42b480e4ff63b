"""The training loop behind train.py.

Epochs run from --epoch_count to --niter + --niter_decay. Every checkpoint save writes the networks
(<prefix>_net_<G_T|G_R|D>.pth, with --ema_decay also <prefix>_net_<G_T|G_R>_ema.pth) and a training state
(<prefix>_train_state.pth) so that --continue_train resumes exactly, also in the middle of an epoch: the state
records the position reached, and the data's random draws are a pure function of the seed, the epoch and the
position (data/sampling.py). 'latest' is saved at the end of every epoch, every --save_latest_freq samples and
on Ctrl-C or SIGTERM (at the next step boundary, util/signals.py); '<epoch>' every --save_epoch_freq epochs
(0 = never), the older ones removed beyond --keep_last (models/retention.py); 'final' when training ends. On a
terminal a progress bar shows every step; in a log file (stdout not a terminal: nohup, SLURM) only the
--print_freq lines are written, with losses averaged since the last line and an ETA. The run holds
checkpoints/<name>/train.lock while it trains (util/run_lock.py): one writer per folder. A new run
writes checkpoints/<name>/config.yaml once its seed is known (docs/training.md#the-saved-config).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator

import torch
from tqdm import tqdm

from data import create_dataset
from evaluation.reports import score_cells
from evaluation.validation import Validator, open_validation_set
from models import checkpoint, retention
from models.base_model import NonFiniteLossError
from options.model_config import create_model
from options.train_options import record_config
from pages.display import Visualizer, page_grid
from training.trackers import Trackers, open_trackers, require_packages
from util import distributed, run_lock, seeding, signals
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
        self.mark = (self.start, 0)  # (time, samples done) at the last throughput()

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

    def state(self) -> dict:
        """Return the average in progress (its sum, on the CPU, and its steps): a resume continues it."""
        return {"total": None if self.total is None else self.total.detach().cpu(), "steps": self.steps}

    def load_state(self, state: dict, device: torch.device) -> None:
        """Continue the average in progress that state() returned; return None."""
        self.total = None if state["total"] is None else state["total"].to(device)
        self.steps = int(state["steps"])

    def throughput(self) -> float:
        """Return the samples per second (this process) since the previous call, or since the start."""
        now, before = time.time(), self.mark
        self.mark = (now, self.samples_done)
        return (self.samples_done - before[1]) / max(now - before[0], 1e-9)

    def eta(self) -> str:
        """Return the estimated time left for the whole run, as H:MM:SS."""
        left = max(self.samples_to_do - self.samples_done, 0)
        seconds = (time.time() - self.start) / max(self.samples_done, 1) * left
        return str(datetime.timedelta(seconds=round(seconds)))


def main(opt: argparse.Namespace) -> None:
    """Train as the options say (in each process, when started by torchrun); a stop exits with 143 or 130."""
    distributed.setup(opt)
    try:
        with hold_checkpoint_folder(opt):
            with signals.stop_at_safe_points():
                code = train(opt)
            distributed.barrier()  # all ranks done before gloo/nccl is torn down (one leaving early can abort another)
    finally:
        distributed.cleanup()
    if code:
        raise SystemExit(code)


@contextlib.contextmanager
def hold_checkpoint_folder(opt: argparse.Namespace) -> Iterator[None]:
    """Within: this run is the one writer of checkpoints/<name> (rank 0 holds its lock, util/run_lock.py), and
    --continue_train auto has become True (a training state to resume) or False (a first start).

    The lock goes on every exit, a stop or an error included; every rank stops when rank 0 may not write.
    """
    device = torch.device("cuda", opt.gpu_ids[0]) if opt.gpu_ids else torch.device("cpu")
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    lock = run_lock.RunLock(folder)
    error, resume = None, False
    try:
        if distributed.is_main_process():
            try:
                lock.acquire()
                # Decided under the lock: a requeued job's earlier run may have been saving until now.
                resume = opt.continue_train == "auto" and checkpoint.auto_resume(opt)
            except UserError as err:
                error = err
        if distributed.broadcast_int(int(error is not None), device):
            if error is not None:
                raise error
            raise SystemExit(2)  # rank 0 says why
        if opt.continue_train == "auto":
            opt.continue_train = bool(distributed.broadcast_int(int(resume), device))
            if distributed.is_main_process():
                print("--continue_train auto: " + ("resuming from 'latest'" if opt.continue_train
                                                   else f"no training state in {folder}: a new run"))
        yield
    finally:
        lock.release()


def agree_on_seed(opt: argparse.Namespace, device: torch.device, seed_all: bool) -> None:
    """Give a run without --seed one, drawn from the OS and the same on every rank (opt.seed); return None.

    It is saved in every training state, so that a resumed run draws the same data. seed_all: also seed
    python, numpy and torch with it (a new run; a resumed one restores their states instead).
    """
    opt.seed = distributed.broadcast_int(seeding.draw_seed(), device)
    if seed_all:
        seeding.seed_everything(opt.seed, opt.rank)
    if distributed.is_main_process():
        print(f"seed: {opt.seed} (drawn at random; --seed {opt.seed} repeats the data of this run)")


def train(opt: argparse.Namespace) -> int:
    """Train from opt.epoch_count to niter + niter_decay, saving checkpoints along the way.

    Return 0 when training is done, or the exit status of a stop (143 SIGTERM, 130 SIGINT) once 'latest'
    holds the position reached. Stop signals are acted on between optimisation steps only (see
    util/signals.py), and under torchrun at the same step on every rank (one all-reduce per step).
    """
    main_process = distributed.is_main_process()
    require_packages(opt)  # on every rank: a missing tracker package stops all of them before any work
    show_bar = main_process and sys.stdout.isatty()
    device = torch.device("cuda", opt.gpu_ids[0]) if opt.gpu_ids else torch.device("cpu")
    saved_seed = checkpoint.saved_seed(opt) if opt.continue_train else None
    if saved_seed is not None and saved_seed != opt.seed:
        # The run continues with its own seed, seeded before the model is built as a run given --seed is (a
        # random VGG, which no checkpoint holds, is then built alike); the saved random states follow.
        if opt.seed is not None and main_process:
            print(f"note: the run was saved with seed {saved_seed}: it continues with it, not --seed {opt.seed}")
        opt.seed = saved_seed
        seeding.seed_everything(opt.seed, opt.rank)
    elif opt.seed is None and not opt.continue_train:
        agree_on_seed(opt, device, seed_all=True)  # before the model: its initial weights follow the seed
    record_config(opt)  # with the seed drawn: the saved config repeats the run
    loader = create_dataset(opt)
    sampler = loader.sampler
    samples_per_epoch = sampler.samples_per_epoch  # this process's share under torchrun
    val_set = open_validation_set(opt)
    model = create_model(opt)
    checkpoint.load_for_run(model, opt)
    model.setup(opt.verbose)
    progress = checkpoint.Progress(opt.epoch_count - 1)
    if opt.continue_train:
        progress = checkpoint.resume(model, opt)  # sets opt.epoch_count
        if opt.seed is None:  # a checkpoint that records no seed
            agree_on_seed(opt, device, seed_all=False)
            model.seed = opt.seed  # saved in the training states from now on
    sampler.seed = opt.seed
    validator = Validator(opt, val_set, model) if val_set is not None else None
    if validator and opt.continue_train:
        validator.resume(progress.epochs_done)
    resume_at = (progress.epochs_done + 1, progress.position) if opt.continue_train else None
    visualizer = Visualizer(opt, model.roles, score_cells, enabled=main_process, resume_at=resume_at)
    trackers = open_trackers(opt, main_process, progress.total_iters if opt.continue_train else None,
                             checkpoint.load_extra(model, checkpoint.prefix_to_load(opt)) if opt.continue_train else {})
    if validator:
        validator.extra = trackers.state()  # 'best' records the W&B run too
    last_epoch = opt.niter + opt.niter_decay
    meter = LossMeter(samples_per_epoch * (last_epoch - progress.epochs_done) - progress.position)
    if progress.meter:
        meter.load_state(progress.meter, model.device)
    total_iters, position = progress.total_iters, progress.position
    for epoch in range(opt.epoch_count, last_epoch + 1):
        visualizer.reset()
        sampler.set_epoch(epoch, start=position)
        epoch_iter, position = position, 0
        bar = tqdm(total=samples_per_epoch, initial=epoch_iter, desc=f"epoch {epoch}/{last_epoch}", unit="img",
                   dynamic_ncols=True, disable=not show_bar)
        epoch_start = time.time()
        shown = ""  # the losses last printed, repeated in the progress bar
        batches = iter(loader)
        for _ in range(len(loader)):  # the same count on every rank: each waits below as often as the others
            t_data_start = time.time()
            try:
                with signals.interruptible():  # a stop ends a wait for data at once: no batch is half-used
                    data = next(batches)
            except signals.StopWaiting:
                data = None
            code = distributed.max_over_ranks(signals.stop_code(), model.device)
            if code:
                bar.close()
                return stop(model, code, epoch, checkpoint.Progress(epoch - 1, epoch_iter, total_iters,
                                                                    meter.state()), trackers)
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
                visuals = model.get_current_visuals()
                visualizer.display_current_results(visuals, epoch, save_result)
                if trackers:
                    trackers.images(total_iters, page_grid(visuals, model.roles))
            if crossed(total_iters, batch, opt.print_freq):
                # Loss values are read from the device only here: each read waits for the GPU.
                means = OrderedDict(zip(model.loss_names, distributed.mean_over_ranks(meter.pop_means()).tolist()))
                shown = " ".join(f"{k}={v:.3g}" for k, v in means.items()) + " "
                message = visualizer.print_current_losses(epoch, epoch_iter, means, t_comp / batch, t_data,
                                                          samples=total_iters)
                if main_process:
                    bar.write(f"{message} eta: {meter.eta()}", file=sys.stdout)
                visualizer.plot_current_losses(epoch, epoch_iter / samples_per_epoch, means)
                trackers.losses(total_iters, means, model.optimizers[0].param_groups[0]["lr"],
                                meter.throughput() * opt.world_size)
            if crossed(total_iters, batch, opt.save_latest_freq):
                if main_process:
                    bar.write(f"saving the latest model (epoch {epoch}, total_iters {total_iters})")
                here = checkpoint.Progress(epoch - 1, epoch_iter, total_iters, meter.state())
                checkpoint.save_all_ranks(model, "latest", here, trackers.state())
                if opt.save_by_iter:
                    checkpoint.save_all_ranks(model, f"iter_{total_iters}", here, trackers.state())
            bar.set_postfix_str(f"{shown}data={t_data:.2f}s comp={t_comp:.2f}s")
            bar.update(batch)
        bar.close()
        epoch_seconds = time.time() - epoch_start
        epoch_lr = model.optimizers[0].param_groups[0]["lr"]
        lr = model.update_learning_rate()
        if main_process:
            # Training time only (the loop above), comparable with the validation line's seconds.
            print(f"end of epoch {epoch} / {last_epoch} ({epoch_seconds:.1f} s); learning rate = {lr:.7f}")
        if validator and validator.due(epoch, last_epoch):
            value = validator.run(epoch, total_iters, epoch_lr)
            visualizer.plot_validation(epoch, value)
            if validator.last is not None:  # rank 0
                trackers.validation(total_iters, validator.last, validator.labels)
            if opt.lr_policy == "plateau":
                lr = model.update_learning_rate(value)
                if main_process:
                    print(f"plateau policy: learning rate = {lr:.7f} after a validation {validator.key} of "
                          f"{value:.4f}")
        # Saved after validation, so that the plateau policy's step on it is part of the saved state.
        done = checkpoint.Progress(epoch, 0, total_iters, meter.state())
        checkpoint.save_all_ranks(model, "latest", done, trackers.state())
        if opt.save_epoch_freq > 0 and epoch % opt.save_epoch_freq == 0:
            checkpoint.save_all_ranks(model, str(epoch), done, trackers.state())
            if opt.keep_last and main_process:  # after 'latest' of this epoch: it, not they, is what a resume reads
                removed = retention.prune_epochs(model.save_dir, epoch, opt.keep_last)
                if removed:
                    print(f"--keep_last {opt.keep_last}: removed the checkpoint(s) of epoch(s) "
                          f"{', '.join(map(str, removed))}")
        if main_process:
            visualizer.write_training_page()
        code = distributed.max_over_ranks(signals.stop_code(), model.device)
        if code and epoch < last_epoch:
            return stop(model, code, epoch + 1, done, trackers, saved=True)
    checkpoint.save_all_ranks(model, "final", checkpoint.Progress(last_epoch, 0, total_iters, meter.state()),
                              trackers.state())
    trackers.close()
    if opt.distributed:
        difference = distributed.max_weight_difference(list(model.nets().values()))
        ema_difference = None
        if model.averages:  # every rank keeps its own EMA of the same weights: they should agree as well
            with model.averaged_weights():
                ema_difference = distributed.max_weight_difference(list(model.nets().values()))
        if main_process:
            print(distributed.weight_sync_line(opt.world_size, difference, ema_difference))
    if main_process:
        print(f"training done: checkpoints in {model.save_dir} (final, latest)")
    return 0


def stop(model, code: int, epoch: int, progress: checkpoint.Progress, trackers: Trackers, saved: bool = False) -> int:
    """Save 'latest' at progress (unless saved already) after a stop signal, on every rank, and close the trackers;
    return the exit code."""
    if distributed.is_main_process():
        cause = "terminated (SIGTERM)" if code == signals.EXIT_CODES[signal.SIGTERM] else "interrupted"
        print(f"\n{cause}: saving 'latest' (--continue_train resumes at sample {progress.position} of epoch "
              f"{epoch})", flush=True)
    if not saved:
        checkpoint.save_all_ranks(model, "latest", progress, trackers.state())
    trackers.close()
    return code
