"""Train IBCLN: python train.py --dataroot DIR --name NAME --model IBCLN --dataset_mode resize_natural_3 ...

Epochs run from --epoch_count to --niter + --niter_decay. Every checkpoint save writes the networks
(<prefix>_net_<G_T|G_R|D>.pth) and a training state (<prefix>_train_state.pth) so that
--continue_train resumes exactly; 'latest' is saved at the end of every epoch, every --save_latest_freq
samples and on Ctrl-C; '<epoch>' every --save_epoch_freq epochs; 'final' when training ends.
"""

from __future__ import annotations

import argparse
import os
import time

from tqdm import tqdm

from data import create_dataset
from models import create_model
from models.base_model import BaseModel, NonFiniteLossError
from options.base_options import run_cli, seed_everything
from options.train_options import TrainOptions
from util import distributed
from util.errors import UserError
from util.visualizer import Visualizer


def crossed(total: int, step: int, freq: int) -> bool:
    """Return True if the sample counter passed a multiple of freq in its last increase by step."""
    return freq > 0 and total // freq > (total - step) // freq


def save_checkpoint(model: BaseModel, prefix: str, epoch_done: int, total_iters: int) -> None:
    """Save networks and training state under prefix (epoch_done = last fully trained epoch); rank 0 only."""
    if not distributed.is_main_process():
        return
    model.save_networks(prefix)
    model.save_training_state(prefix, epoch_done, total_iters)


def resume(model: BaseModel, opt: argparse.Namespace) -> int:
    """Restore the training state saved with the loaded networks; return total_iters and set opt.epoch_count."""
    prefix = model.checkpoint_prefix(opt)
    if not os.path.isfile(model.training_state_path(prefix)):
        print(f"note: no training state {model.training_state_path(prefix)}: optimisers start afresh at epoch "
              f"{opt.epoch_count} (a checkpoint without state, e.g. the released one)")
        return 0
    counters = model.load_training_state(prefix)
    opt.epoch_count = counters["epoch"] + 1
    print(f"resuming after epoch {counters['epoch']} ({counters['total_iters']} samples seen)")
    return counters["total_iters"]


def main(opt: argparse.Namespace) -> None:
    """Run the training loop (in each process, when started by torchrun)."""
    distributed.setup(opt)
    try:
        train(opt)
    finally:
        distributed.cleanup()


def train(opt: argparse.Namespace) -> None:
    """Train from opt.epoch_count to niter + niter_decay, saving checkpoints along the way."""
    if opt.distributed and opt.seed is not None:
        seed_everything(opt.seed + opt.rank)  # ranks draw different samples; DDP copies rank 0's weights
    main_process = distributed.is_main_process()
    loader = create_dataset(opt)
    samples_per_epoch = len(loader.sampler)  # this process's share under torchrun
    model = create_model(opt)
    model.setup(opt)
    total_iters = resume(model, opt) if opt.continue_train else 0
    visualizer = Visualizer(opt, enabled=main_process)
    last_epoch = opt.niter + opt.niter_decay
    epochs_done = opt.epoch_count - 1
    try:
        for epoch in range(opt.epoch_count, last_epoch + 1):
            visualizer.reset()
            if opt.distributed:
                loader.sampler.set_epoch(epoch)
            bar = tqdm(total=samples_per_epoch, desc=f"epoch {epoch}/{last_epoch}", unit="img", dynamic_ncols=True,
                       disable=not main_process)
            epoch_iter = 0
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
                if crossed(total_iters, batch, opt.display_freq):
                    save_result = crossed(total_iters, batch, opt.update_html_freq)
                    visualizer.display_current_results(model.get_current_visuals(), epoch, save_result)
                if crossed(total_iters, batch, opt.print_freq):
                    # Loss values are read from the device only here: each read waits for the GPU.
                    losses = model.get_current_losses()
                    shown = " ".join(f"{k}={v:.3g}" for k, v in losses.items()) + " "
                    message = visualizer.print_current_losses(epoch, epoch_iter, losses, t_comp / batch, t_data)
                    if main_process:
                        bar.write(message)
                    visualizer.plot_current_losses(epoch, epoch_iter / samples_per_epoch, losses)
                if crossed(total_iters, batch, opt.save_latest_freq):
                    if main_process:
                        bar.write(f"saving the latest model (epoch {epoch}, total_iters {total_iters})")
                    save_checkpoint(model, "latest", epochs_done, total_iters)
                    if opt.save_by_iter:
                        save_checkpoint(model, f"iter_{total_iters}", epochs_done, total_iters)
                bar.set_postfix_str(f"{shown}data={t_data:.2f}s comp={t_comp:.2f}s")
                bar.update(batch)
                t_data_start = time.time()
            bar.close()
            lr = model.update_learning_rate()
            epochs_done = epoch
            save_checkpoint(model, "latest", epoch, total_iters)
            if epoch % opt.save_epoch_freq == 0:
                save_checkpoint(model, str(epoch), epoch, total_iters)
            if main_process:
                print(f"end of epoch {epoch} / {last_epoch}; learning rate = {lr:.7f}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: saving 'latest' (--continue_train restarts at epoch {epochs_done + 1})")
        save_checkpoint(model, "latest", epochs_done, total_iters)
        raise SystemExit(130) from None
    save_checkpoint(model, "final", last_epoch, total_iters)
    if opt.distributed:
        difference = distributed.max_weight_difference(list(model.nets().values()))
        if main_process:
            print(f"DDP: {opt.world_size} processes, largest weight difference from rank 0: {difference:g}")
    if main_process:
        print(f"training done: checkpoints in {model.save_dir} (final, latest)")


if __name__ == "__main__":
    run_cli(main, TrainOptions())
