"""Checkpoints, in one place: the network files, the training state beside them, resuming, fine-tuning, 'best'.

The pix2pix format: ``<prefix>_net_<name>.pth`` holds a plain CPU state_dict of one network (no
``module.`` prefix), so the authors' ``final_net_G_T.pth`` / ``final_net_G_R.pth`` load unchanged. Beside
the networks, ``<prefix>_train_state.pth`` holds what an exact resume needs: optimisers, schedulers, the
schedule's options, counters, every random generator's state and any ``extra`` (validation's best value).
Prefixes: an epoch number, latest, final, best, iter_<n>. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from typing import Any

from torch import nn

from util import distributed, seeding
from util.errors import UserError
from util.files import atomic_torch_save, safe_torch_load

# The options that define the learning-rate schedule; a resumed run follows the current command line's.
SCHEDULE_KEYS = ("niter", "niter_decay", "lr", "lr_policy")


def prefix_to_load(opt: argparse.Namespace) -> str:
    """Return the checkpoint prefix to load: iter_<load_iter> when --load_iter > 0, else --epoch."""
    return f"iter_{opt.load_iter}" if opt.load_iter > 0 else str(opt.epoch)


def network_path(folder: str, prefix: str | int, name: str) -> str:
    """Return the path of one network file, <folder>/<prefix>_net_<name>.pth."""
    return os.path.join(folder, f"{prefix}_net_{name}.pth")


def training_state_path(folder: str, prefix: str | int) -> str:
    """Return the path of the training-state file saved beside the networks."""
    return os.path.join(folder, f"{prefix}_train_state.pth")


def available(folder: str) -> list[str]:
    """Return the checkpoint prefixes (epochs, latest, final, iter_N, ...) present in folder, epochs first."""
    found = set()
    for path in glob.glob(os.path.join(folder, "*_net_*.pth")):
        match = re.match(r"(.+)_net_[^_]+(_[^_]+)?\.pth$", os.path.basename(path))
        if match:
            found.add(match.group(1))
    return sorted(found, key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p))


def save_networks(model, prefix: str | int) -> None:
    """Write every network of model as <prefix>_net_<name>.pth in its save_dir (plain CPU state_dict, atomic)."""
    os.makedirs(model.save_dir, exist_ok=True)
    for name, net in model.nets().items():
        # contiguous(): a channels_last run saves the same standard (NCHW) tensors as any other.
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        atomic_torch_save(state, network_path(model.save_dir, prefix, name))


def load_networks(model, prefix: str | int) -> None:
    """Load every network of model from <prefix>_net_<name>.pth; a missing or mismatching file is a UserError."""
    for name, net in model.nets().items():
        path = network_path(model.save_dir, prefix, name)
        if not os.path.isfile(path):
            listing = ", ".join(available(model.save_dir)) or "none"
            raise UserError(f"no checkpoint {path} (--epoch {prefix}); checkpoints present in "
                            f"{model.save_dir}: {listing}")
        print(f"loading the model from {path}")
        load_state_dict_checked(net, safe_torch_load(path, map_location=model.device), path)


def load_pretrained(model, folder: str, prefix: str) -> None:
    """Start training from the generators <folder>/<prefix>_net_G*.pth; other networks and optimisers start fresh.

    This is how to fine-tune from the authors' release, which has only final_net_G_T.pth and
    final_net_G_R.pth: a missing generator is a UserError, a missing discriminator a note.
    """
    for name, net in model.nets().items():
        path = network_path(folder, prefix, name)
        if os.path.isfile(path):
            print(f"fine-tuning: {name} starts from {path}")
            load_state_dict_checked(net, safe_torch_load(path, map_location=model.device), path)
        elif name.startswith("G"):
            listing = ", ".join(available(folder)) or "none"
            raise UserError(f"--pretrained_dir: no {path} (--epoch {prefix}); checkpoints present in "
                            f"{folder}: {listing}")
        else:
            print(f"fine-tuning: no {path}: {name} starts from a fresh initialisation")


def load_state_dict_checked(net: nn.Module, state: Any, path: str) -> None:
    """Load state into net; strips a ``module.`` prefix; a key or shape mismatch is a UserError naming path."""
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state_dict (a dict of tensors), found {type(state).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise UserError(f"{path}: does not match the {type(net).__name__} architecture: {'; '.join(parts)}")
    net.load_state_dict(state)


def save_training_state(model, prefix: str | int, epoch: int, total_iters: int, extra: dict | None = None) -> None:
    """Write optimisers, schedulers, schedule, counters, RNG states and `extra` as <prefix>_train_state.pth."""
    state = {
        "epoch": epoch,
        "total_iters": total_iters,
        "optimizers": [o.state_dict() for o in model.optimizers],
        "schedulers": [s.state_dict() for s in model.schedulers],
        "schedule": {key: getattr(model.opt, key) for key in SCHEDULE_KEYS},
        "extra": extra or {},
        **seeding.rng_states(),
    }
    atomic_torch_save(state, training_state_path(model.save_dir, prefix))


def save(model, prefix: str | int, epoch_done: int, total_iters: int, extra: dict | None = None) -> None:
    """Save networks and training state under prefix (epoch_done = last fully trained epoch), on rank 0 only."""
    if not distributed.is_main_process():
        return
    save_networks(model, prefix)
    save_training_state(model, prefix, epoch_done, total_iters, extra)


def load_training_state(model, prefix: str | int) -> dict[str, Any]:
    """Restore optimisers, schedulers and RNG states from <prefix>_train_state.pth; return its counters.

    The learning rate then follows the current options' schedule (BaseModel.follow_current_schedule). The
    returned dict holds epoch, total_iters, extra (what save_training_state was given) and schedule_note
    (a line naming the schedule options that changed since the save, or None).
    """
    path = training_state_path(model.save_dir, prefix)
    state = safe_torch_load(path)
    for optimizer, saved in zip(model.optimizers, state["optimizers"]):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(model.schedulers, state["schedulers"]):
        scheduler.load_state_dict(saved)
    seeding.restore_rng_states(state, getattr(model.opt, "rank", 0))
    epoch = int(state["epoch"])
    model.follow_current_schedule(epoch)
    saved_schedule = state.get("schedule", {})
    changed = [f"{key} {saved_schedule[key]} -> {getattr(model.opt, key)}" for key in SCHEDULE_KEYS
               if key in saved_schedule and saved_schedule[key] != getattr(model.opt, key)]
    note = None
    if changed:
        note = (f"note: the learning-rate schedule changed since {path} was saved ({', '.join(changed)}): "
                f"epochs {epoch + 1} on follow the new one (lr {model.optimizers[0].param_groups[0]['lr']:.7f} "
                f"for epoch {epoch + 1})")
    return {"epoch": epoch, "total_iters": int(state["total_iters"]), "extra": state.get("extra", {}),
            "schedule_note": note}


def load_extra(model, prefix: str | int) -> dict:
    """Return what save_training_state was given as `extra` for prefix ({} without such a file), restoring nothing."""
    path = training_state_path(model.save_dir, prefix)
    return safe_torch_load(path).get("extra", {}) if os.path.isfile(path) else {}


def resume(model, opt: argparse.Namespace) -> int:
    """Restore the training state saved with the loaded networks; return total_iters and set opt.epoch_count."""
    prefix = prefix_to_load(opt)
    path = training_state_path(model.save_dir, prefix)
    if not os.path.isfile(path):
        print(f"note: no training state {path}: optimisers start afresh at epoch {opt.epoch_count} (a checkpoint "
              "without state, e.g. the released one)")
        return 0
    counters = load_training_state(model, prefix)
    opt.epoch_count = counters["epoch"] + 1
    if distributed.is_main_process():
        print(f"resuming after epoch {counters['epoch']} ({counters['total_iters']} samples seen)")
        if counters["schedule_note"]:
            print(counters["schedule_note"])
    return counters["total_iters"]

