"""The learning-rate schedule of train.py's --lr_policy (docs/training.md), one scheduler per optimiser."""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from util.errors import UserError

from .config import ModelConfig


def get_scheduler(optimizer: torch.optim.Optimizer, config: ModelConfig
                  ) -> lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau:
    """Return the learning-rate scheduler for config.lr_policy, positioned at epoch config.epoch_count.

    The scheduler's counter is the number of finished epochs, so a resumed run that restores its
    state_dict and a fresh run started with --epoch_count agree. linear keeps the lr for niter
    epochs, then decays it to zero over niter_decay epochs. plateau is stepped after each validation on
    the result's PSNR: the lr is multiplied by 0.2 after 5 validations without a rise of 1% over the best.
    """
    if config.lr_policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.2, threshold=0.01, patience=5)
    start = config.epoch_count - 2  # -1 for a run starting at epoch 1
    if start >= 0:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    if config.lr_policy == "linear":
        def rule(finished: int) -> float:
            return 1.0 - max(0, finished + 1 - config.niter) / float(config.niter_decay + 1)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=rule, last_epoch=start)
    if config.lr_policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_iters, gamma=0.1, last_epoch=start)
    if config.lr_policy == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.niter, eta_min=0, last_epoch=start)
    raise UserError(f"--lr_policy {config.lr_policy}: expected linear, step, plateau or cosine")
