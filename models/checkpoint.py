"""Checkpoints, in one place: the network files, the training state beside them, resuming, fine-tuning, 'best'.

The pix2pix format: ``<prefix>_net_<name>.pth`` holds a plain CPU state_dict of one network (no
``module.`` prefix), so the authors' ``final_net_G_T.pth`` / ``final_net_G_R.pth`` load unchanged. Beside
the networks, ``<prefix>_train_state.pth`` holds what an exact resume needs: optimisers, schedulers, the fp16
loss scaler, the schedule's options, where the run stands (epochs done and the position within the next
one), the run's seed, every process's random generators and loss meter, and any ``extra`` (validation's
best value). A run with --ema_decay also saves the EMA of each averaged network as ``<prefix>_net_<name>_ema.pth``
(the same plain state_dict format: it loads as that network), part of what an exact resume restores.
Prefixes: an epoch number, latest, final, best, best_epoch<n> (--keep_best), iter_<n>. Every file is written
atomically.

The model itself knows nothing of the command line (models/config.py); the functions here that take the
run's options (load_for_run, prefix_to_load, saved_seed, resume) read what is about the run, not the model:
which checkpoint it starts from (--epoch, --load_iter, --continue_train, --pretrained_dir), where it stands,
and the process's rank under torchrun.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from util import distributed, seeding
from util.errors import UserError
from util.files import atomic_torch_save, safe_torch_load

# The options that define the learning-rate schedule; a resumed run follows the current command line's.
SCHEDULE_KEYS = ("niter", "niter_decay", "lr", "lr_policy")
EMA_SUFFIX = "_ema"  # <prefix>_net_<name>_ema.pth: the EMA of network <name> (--ema_decay)


def prefix_to_load(opt: argparse.Namespace) -> str:
    """Return the checkpoint prefix to load: iter_<load_iter> when --load_iter > 0, else --epoch."""
    return f"iter_{opt.load_iter}" if opt.load_iter > 0 else str(opt.epoch)


def network_path(folder: str, prefix: str | int, name: str, ema: bool = False) -> str:
    """Return the path of one network file, <folder>/<prefix>_net_<name>.pth (with ema: its EMA, ..._<name>_ema.pth)."""
    return os.path.join(folder, f"{prefix}_net_{name}{EMA_SUFFIX if ema else ''}.pth")


def network_files(folder: str) -> list[str]:
    """Return the paths of the network files (<prefix>_net_<name>.pth) in folder, sorted."""
    return sorted(glob.glob(network_path(glob.escape(folder), "*", "*")))


def training_state_path(folder: str, prefix: str | int) -> str:
    """Return the path of the training-state file saved beside the networks."""
    return os.path.join(folder, f"{prefix}_train_state.pth")


def available(folder: str) -> list[str]:
    """Return the checkpoint prefixes (epochs, latest, final, iter_N, ...) present in folder, epochs first."""
    found = set()
    for path in network_files(folder):
        match = re.match(r"(.+)_net_[^_]+(_[^_]+)?\.pth$", os.path.basename(path))
        if match:
            found.add(match.group(1))
    return sorted(found, key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p))


def delete(folder: str, prefix: str | int) -> None:
    """Remove every file of checkpoint prefix from folder: its networks, their EMA and its training state."""
    for path in [*glob.glob(network_path(glob.escape(folder), glob.escape(str(prefix)), "*")),
                 training_state_path(folder, prefix)]:
        if os.path.isfile(path):
            os.remove(path)


def save_networks(model, prefix: str | int) -> None:
    """Write every network of model as <prefix>_net_<name>.pth in its save_dir (plain CPU state_dict, atomic), and
    the EMA of each averaged one as <prefix>_net_<name>_ema.pth."""
    os.makedirs(model.save_dir, exist_ok=True)
    for name, net in model.nets().items():
        # contiguous(): a channels_last run saves the same standard (NCHW) tensors as any other.
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        atomic_torch_save(state, network_path(model.save_dir, prefix, name))
        ema_path = network_path(model.save_dir, prefix, name, ema=True)
        if name in model.averages:
            atomic_torch_save(model.averages[name].state_dict(), ema_path)
        elif os.path.isfile(ema_path):
            os.remove(ema_path)  # an EMA left under this prefix by an earlier run would not belong to these weights


def load_networks(model, prefix: str | int, ema: bool = False) -> None:
    """Load every network of model from <prefix>_net_<name>.pth (ema: from its EMA, <prefix>_net_<name>_ema.pth);
    a missing or mismatching file is a UserError."""
    for name, net in model.nets().items():
        path = network_path(model.save_dir, prefix, name)
        if not os.path.isfile(path):
            listing = ", ".join(available(model.save_dir)) or "none"
            raise UserError(f"no checkpoint {path} (--epoch {prefix}); checkpoints present in "
                            f"{model.save_dir}: {listing}")
        if ema:
            path = network_path(model.save_dir, prefix, name, ema=True)
            if not os.path.isfile(path):
                raise UserError(f"--ema: no {path}: the run saved no EMA weights (it was trained without "
                                "--ema_decay)")
        print(f"loading the model from {path}")
        load_state_dict_checked(net, safe_torch_load(path, map_location=model.device), path)


def load_for_run(model, opt: argparse.Namespace) -> None:
    """Load the networks a run starts from; return None.

    Testing or resuming (--continue_train): every network from --epoch's (or --load_iter's) checkpoint in the
    run's folder (test.py --ema: the EMA weights). Fine-tuning (--pretrained_dir): the generators from that
    folder. A new run: nothing. A training model's EMA (--ema_decay) starts at the weights the run starts from,
    or, when resuming, is the checkpoint's EMA (load_averages).
    """
    prefix = prefix_to_load(opt)
    if not opt.is_train or opt.continue_train:
        load_networks(model, prefix, ema=not opt.is_train and opt.ema)
    elif opt.pretrained_dir:
        load_pretrained(model, opt.pretrained_dir, prefix)
    for averages in model.averages.values():
        averages.restart()
    if opt.is_train and opt.continue_train:
        load_averages(model, prefix)


def load_averages(model, prefix: str | int) -> None:
    """Load the EMA of each averaged network from <prefix>_net_<name>_ema.pth; without one it stays at the loaded
    weights (a note says so)."""
    for name, averages in model.averages.items():
        path = network_path(model.save_dir, prefix, name, ema=True)
        if not os.path.isfile(path):
            if distributed.is_main_process():
                print(f"note: no {path} (saved without --ema_decay): the EMA of {name} starts at the loaded weights")
            continue
        net = model.nets()[name]
        averages.load_state_dict(matching_state(net, safe_torch_load(path, map_location=model.device), path))


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
    net.load_state_dict(matching_state(net, state, path))


def matching_state(net: nn.Module, state: Any, path: str) -> dict[str, Any]:
    """Return state without a ``module.`` prefix, checked against net's keys and shapes (a mismatch is a UserError
    naming path)."""
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
    return state


@dataclass
class Progress:
    """Where a run stands: epochs fully trained, samples of the next epoch this process has already trained
    on (its position in that epoch's share), samples this process has seen, and its loss meter's state."""

    epochs_done: int = 0
    position: int = 0
    total_iters: int = 0
    meter: dict | None = None


def rank_state(meter: dict | None) -> dict[str, Any]:
    """Return what one process contributes to a training state: its random states and its loss meter's state."""
    return {**seeding.rng_states(), "meter": meter}


def save_training_state(model, prefix: str | int, progress: Progress, extra: dict | None = None,
                        ranks: list[dict] | None = None) -> None:
    """Write optimisers, schedulers, loss scaler, schedule, counters, seed, every process's random state and
    `extra` as <prefix>_train_state.pth (ranks: rank_state of each process; None = this process's alone)."""
    scaler = getattr(model, "scaler", None)
    state = {
        "epoch": progress.epochs_done,
        "position": progress.position,
        "total_iters": progress.total_iters,
        "seed": model.seed,
        "optimizers": [o.state_dict() for o in model.optimizers],
        "schedulers": [s.state_dict() for s in model.schedulers],
        # fp16 loss scaling: without it a resume restarts the scale at 65536 and skips steps until it falls back.
        "scaler": scaler.state_dict() if scaler is not None else None,
        "schedule": {key: getattr(model.config, key) for key in SCHEDULE_KEYS},
        "extra": extra or {},
        "ranks": ranks if ranks is not None else [rank_state(progress.meter)],
    }
    atomic_torch_save(state, training_state_path(model.save_dir, prefix))


def save(model, prefix: str | int, epoch_done: int, total_iters: int, extra: dict | None = None,
         position: int = 0, ranks: list[dict] | None = None) -> None:
    """Save networks and training state under prefix, on rank 0 only; return None.

    epoch_done is the last fully trained epoch, position the samples of the next one already trained on.
    """
    if not distributed.is_main_process():
        return
    save_networks(model, prefix)
    save_training_state(model, prefix, Progress(epoch_done, position, total_iters), extra, ranks)


def save_all_ranks(model, prefix: str | int, progress: Progress, extra: dict | None = None) -> None:
    """Save prefix with every process's random state and loss meter (progress.meter) and extra; return None.

    A collective under torchrun: every rank calls it at the same step; rank 0 gathers and writes.
    """
    ranks = distributed.gather_to_main(rank_state(progress.meter))
    save(model, prefix, progress.epochs_done, progress.total_iters, extra, progress.position, ranks)


def load_training_state(model, prefix: str | int, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Restore optimisers, schedulers, loss scaler and this process's random states from <prefix>_train_state.pth;
    return its counters. rank and world_size: this process's under torchrun.

    The learning rate then follows the current options' schedule (BaseModel.follow_current_schedule). The
    returned dict holds epoch, position, total_iters, meter (this process's loss meter state or None), extra
    (what save_training_state was given) and notes (lines to print: the schedule options that changed since
    the save, CUDA states that did not fit, ...). The seed is read before the model exists (saved_seed).
    """
    path = training_state_path(model.save_dir, prefix)
    state = safe_torch_load(path)
    for optimizer, saved in zip(model.optimizers, state["optimizers"]):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(model.schedulers, state["schedulers"]):
        scheduler.load_state_dict(saved)
    notes = []
    scaler = getattr(model, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    elif scaler is not None:
        notes.append(f"note: {path} holds no fp16 loss scale: it starts again at {scaler.get_scale():g}")
    ranks = state.get("ranks") or [{key: state[key] for key in state if key.startswith("rng_")}]
    own = ranks[rank] if len(ranks) == world_size else None
    cuda_note = seeding.restore_rng_states(own or ranks[0])
    if own is None and rank > 0:
        # Saved by an older version or with another number of processes: no state of this rank's own.
        seeding.reseed_from_current(rank)
    if cuda_note and rank == 0:
        notes.append(cuda_note)
    if own is None and rank == 0 and world_size != len(ranks):
        notes.append(f"note: {path} was saved by {len(ranks)} process(es), this run has {world_size}: the other "
                     "ranks reseed from rank 0's random state (not an exact resume)")
    epoch = int(state["epoch"])
    model.follow_current_schedule(epoch)
    saved_schedule = state.get("schedule", {})
    changed = [f"{key} {saved_schedule[key]} -> {getattr(model.config, key)}" for key in SCHEDULE_KEYS
               if key in saved_schedule and saved_schedule[key] != getattr(model.config, key)]
    if changed:
        notes.append(f"note: the learning-rate schedule changed since {path} was saved ({', '.join(changed)}): "
                     f"epochs {epoch + 1} on follow the new one (lr "
                     f"{model.optimizers[0].param_groups[0]['lr']:.7f} for epoch {epoch + 1})")
    return {"epoch": epoch, "position": int(state.get("position", 0)), "total_iters": int(state["total_iters"]),
            "meter": own.get("meter") if own else None, "extra": state.get("extra", {}), "notes": notes}


def load_extra(model, prefix: str | int) -> dict:
    """Return what save_training_state was given as `extra` for prefix ({} without such a file), restoring nothing."""
    path = training_state_path(model.save_dir, prefix)
    return safe_torch_load(path).get("extra", {}) if os.path.isfile(path) else {}


def saved_epoch(model, prefix: str | int) -> int | None:
    """Return the epochs done recorded in prefix's training state (None without such a file), restoring nothing."""
    path = training_state_path(model.save_dir, prefix)
    return int(safe_torch_load(path)["epoch"]) if os.path.isfile(path) else None


def saved_seed(opt: argparse.Namespace) -> int | None:
    """Return the seed recorded in the training state that --continue_train loads (None: no state, or an older one).

    Read before the model is built: a resumed run is seeded with it, as a run given --seed is.
    """
    path = training_state_path(os.path.join(opt.checkpoints_dir, opt.name), prefix_to_load(opt))
    seed = safe_torch_load(path).get("seed") if os.path.isfile(path) else None
    return None if seed is None else int(seed)


def auto_resume(opt: argparse.Namespace) -> bool:
    """Return True when --continue_train auto resumes: checkpoints/<name> holds 'latest' with its training state.

    False for a first start (no checkpoint there); a folder with checkpoints but no such state is a UserError
    unless --overwrite, as a new run over an existing one is.
    """
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    state = training_state_path(folder, "latest")
    if os.path.isfile(state):
        return True
    present = available(folder)
    if present and not opt.overwrite:
        raise UserError(f"--continue_train auto: {folder} holds checkpoints ({', '.join(present)}) but no {state} to "
                        "resume from: pass --overwrite to start afresh there, or choose another --name")
    return False


def resume(model, opt: argparse.Namespace) -> Progress:
    """Restore the training state saved with the loaded networks; return where the run stands.

    Sets opt.epoch_count to the epoch to continue (opt.seed is the loop's: see saved_seed); opt.rank and
    opt.world_size are util.distributed.setup's.
    """
    prefix = prefix_to_load(opt)
    path = training_state_path(model.save_dir, prefix)
    main_process = distributed.is_main_process()
    if not os.path.isfile(path):
        print(f"note: no training state {path}: optimisers start afresh at epoch {opt.epoch_count} (a checkpoint "
              "without state, e.g. the released one)")
        return Progress(opt.epoch_count - 1)
    counters = load_training_state(model, prefix, opt.rank, opt.world_size)
    opt.epoch_count = counters["epoch"] + 1
    progress = Progress(counters["epoch"], counters["position"], counters["total_iters"], counters["meter"])
    if main_process:
        where = (f"at sample {progress.position} of epoch {opt.epoch_count}" if progress.position
                 else f"after epoch {progress.epochs_done}")
        print(f"resuming {where} ({progress.total_iters} samples seen)")
        for note in counters["notes"]:
            print(note)
    return progress
