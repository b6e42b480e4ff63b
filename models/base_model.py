"""BaseModel: what every model shares (devices, schedulers, checkpoints, training state, visuals, losses)."""

from __future__ import annotations

import argparse
import glob
import os
import random
import re
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from util.errors import UserError
from util.util import atomic_torch_save, safe_torch_load

from . import networks

# The options that define the learning-rate schedule; a resumed run follows the current command line's.
SCHEDULE_KEYS = ("niter", "niter_decay", "lr", "lr_policy")


def select_kernels(opt: argparse.Namespace) -> None:
    """Set cuDNN's benchmark mode and torch's deterministic mode for this run's options (returns nothing).

    Benchmark mode times every convolution algorithm once per input size and keeps the fastest: worth it for
    training's fixed crops and for --tile's equal tiles, not for test images of many sizes, where each new
    size is timed again and the trial workspaces inflate the peak memory. --deterministic turns it off and
    makes torch use deterministic algorithms (bit-identical GPU runs, somewhat slower).
    """
    deterministic = bool(getattr(opt, "deterministic", False))
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this when its first handle is created.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    fixed_sizes = opt.is_train or bool(getattr(opt, "tile", 0))
    torch.backends.cudnn.benchmark = bool(opt.gpu_ids) and fixed_sizes and not deterministic


class BaseModel(ABC):
    """Subclasses set loss_names, model_names, visual_names and optimizers, and implement the abstract methods.

    Checkpoints are the pix2pix format: ``<epoch>_net_<name>.pth`` holding a plain state_dict (no
    ``module.`` prefix). Beside them, ``<epoch>_train_state.pth`` holds what an exact resume needs.
    """

    def __init__(self, opt: argparse.Namespace):
        self.opt = opt
        self.gpu_ids = opt.gpu_ids
        self.is_train = opt.is_train
        self.device = torch.device("cuda", self.gpu_ids[0]) if self.gpu_ids else torch.device("cpu")
        select_kernels(opt)
        self.save_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.loss_names: list[str] = []
        self.model_names: list[str] = []
        self.visual_names: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        self.image_paths: list[str] = []
        self.metric = 0.0  # for the plateau policy

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Return the parser with this model's own flags added."""
        return parser

    @abstractmethod
    def set_input(self, data: dict) -> None:
        """Unpack a batch from the data loader."""

    @abstractmethod
    def forward(self) -> None:
        """Run the networks on the current input."""

    @abstractmethod
    def optimize_parameters(self) -> None:
        """Compute losses and gradients and update the weights (one training step)."""

    def setup(self, opt: argparse.Namespace) -> None:
        """Create schedulers when training; load checkpoints when testing or resuming; print the networks."""
        if self.is_train:
            self.schedulers = [networks.get_scheduler(o, opt) for o in self.optimizers]
        if not self.is_train or opt.continue_train:
            self.load_networks(self.checkpoint_prefix(opt))
        elif getattr(opt, "pretrained_dir", ""):
            self.load_pretrained(opt.pretrained_dir, self.checkpoint_prefix(opt))
        self.print_networks(opt.verbose)

    @staticmethod
    def checkpoint_prefix(opt: argparse.Namespace) -> str:
        """Return the checkpoint name to load: iter_<load_iter> when --load_iter > 0, else --epoch."""
        return f"iter_{opt.load_iter}" if opt.load_iter > 0 else str(opt.epoch)

    def nets(self) -> dict[str, nn.Module]:
        """Return the networks by name, unwrapped from DataParallel."""
        return {name: networks.unwrap(getattr(self, "net" + name)) for name in self.model_names}

    def eval(self) -> None:
        """Put every network in eval mode."""
        for net in self.nets().values():
            net.eval()

    def train(self) -> None:
        """Put every network in train mode."""
        for net in self.nets().values():
            net.train()

    def test(self, scored_only: bool = False) -> None:
        """Run forward without gradients (inference mode) and compute the visuals; models may override it.

        scored_only: the caller only scores the outputs (validation), so a model may skip the others.
        """
        with torch.inference_mode():
            self.forward()

    def get_image_paths(self) -> list[str]:
        """Return the paths of the current input images."""
        return self.image_paths

    def update_learning_rate(self) -> float:
        """Step every scheduler once (at the end of an epoch) and return the new learning rate."""
        for scheduler in self.schedulers:
            if self.opt.lr_policy == "plateau":
                scheduler.step(self.metric)
            else:
                scheduler.step()
        return self.optimizers[0].param_groups[0]["lr"]

    def get_current_visuals(self) -> OrderedDict:
        """Return visual name -> tensor (N,C,H,W) or list of tensors (a cascade)."""
        return OrderedDict((name, getattr(self, name)) for name in self.visual_names)

    def current_loss_values(self) -> torch.Tensor:
        """Return the last training step's losses stacked in loss_names order, left on the device (no wait)."""
        return torch.stack([torch.as_tensor(getattr(self, "loss_" + name)).detach().float().reshape(()).to(self.device)
                            for name in self.loss_names])

    def get_current_losses(self) -> OrderedDict:
        """Return loss name -> float for the last training step (one read from the device for all of them)."""
        return OrderedDict(zip(self.loss_names, self.current_loss_values().tolist()))

    # ----- checkpoints -------------------------------------------------------------------------
    def network_path(self, prefix: str, name: str) -> str:
        """Return the path of one network file, <save_dir>/<prefix>_net_<name>.pth."""
        return os.path.join(self.save_dir, f"{prefix}_net_{name}.pth")

    def save_networks(self, prefix: str | int) -> None:
        """Write every network as <prefix>_net_<name>.pth (plain CPU state_dict, atomic)."""
        os.makedirs(self.save_dir, exist_ok=True)
        for name, net in self.nets().items():
            # contiguous(): a channels_last run saves the same standard (NCHW) tensors as any other.
            state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            atomic_torch_save(state, self.network_path(str(prefix), name))

    def available_checkpoints(self, folder: str | None = None) -> list[str]:
        """Return the checkpoint prefixes (epochs, latest, final, iter_N) present in folder (default save_dir)."""
        found = set()
        for path in glob.glob(os.path.join(folder or self.save_dir, "*_net_*.pth")):
            match = re.match(r"(.+)_net_[^_]+(_[^_]+)?\.pth$", os.path.basename(path))
            if match:
                found.add(match.group(1))
        return sorted(found, key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p))

    def load_networks(self, prefix: str | int) -> None:
        """Load every network from <prefix>_net_<name>.pth; a missing or mismatching file is a UserError."""
        for name, net in self.nets().items():
            path = self.network_path(str(prefix), name)
            if not os.path.isfile(path):
                present = self.available_checkpoints()
                listing = ", ".join(present) if present else "none"
                raise UserError(f"no checkpoint {path} (--epoch {prefix}); checkpoints present in "
                                f"{self.save_dir}: {listing}")
            print(f"loading the model from {path}")
            state = safe_torch_load(path, map_location=self.device)
            load_state_dict_checked(net, state, path)

    def load_pretrained(self, folder: str, prefix: str) -> None:
        """Start training from the generators <folder>/<prefix>_net_G*.pth; other networks and optimisers start fresh.

        This is how to fine-tune from the authors' release, which has only final_net_G_T.pth and
        final_net_G_R.pth: a missing generator is a UserError, a missing discriminator a note.
        """
        for name, net in self.nets().items():
            path = os.path.join(folder, f"{prefix}_net_{name}.pth")
            if os.path.isfile(path):
                print(f"fine-tuning: {name} starts from {path}")
                load_state_dict_checked(net, safe_torch_load(path, map_location=self.device), path)
            elif name.startswith("G"):
                listing = ", ".join(self.available_checkpoints(folder)) or "none"
                raise UserError(f"--pretrained_dir: no {path} (--epoch {prefix}); checkpoints present in "
                                f"{folder}: {listing}")
            else:
                print(f"fine-tuning: no {path}: {name} starts from a fresh initialisation")

    def training_state_path(self, prefix: str) -> str:
        """Return the path of the training-state file saved beside the networks."""
        return os.path.join(self.save_dir, f"{prefix}_train_state.pth")

    def save_training_state(self, prefix: str | int, epoch: int, total_iters: int, extra: dict | None = None) -> None:
        """Write optimisers, schedulers, schedule, counters, RNG states and `extra` as <prefix>_train_state.pth."""
        np_state = np.random.get_state()
        state = {
            "epoch": epoch,
            "total_iters": total_iters,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "schedule": {key: getattr(self.opt, key) for key in SCHEDULE_KEYS},
            "extra": extra or {},
            "rng_python": random.getstate(),
            # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
            "rng_numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        atomic_torch_save(state, self.training_state_path(str(prefix)))

    def load_training_state(self, prefix: str | int) -> dict[str, Any]:
        """Restore optimisers, schedulers and RNG states from <prefix>_train_state.pth; return its counters.

        The learning rate then follows the current options' schedule (see follow_current_schedule). The
        returned dict holds epoch, total_iters, extra (what save_training_state was given) and schedule_note
        (a line naming the schedule options that changed since the save, or None).
        """
        path = self.training_state_path(str(prefix))
        state = safe_torch_load(path)
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        random.setstate(_as_tuple(state["rng_python"]))
        name, keys, *rest = state["rng_numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        reseed_for_rank(getattr(self.opt, "rank", 0))
        epoch = int(state["epoch"])
        self.follow_current_schedule(epoch)
        saved_schedule = state.get("schedule", {})
        changed = [f"{key} {saved_schedule[key]} -> {getattr(self.opt, key)}" for key in SCHEDULE_KEYS
                   if key in saved_schedule and saved_schedule[key] != getattr(self.opt, key)]
        note = None
        if changed:
            note = (f"note: the learning-rate schedule changed since {path} was saved ({', '.join(changed)}): "
                    f"epochs {epoch + 1} on follow the new one (lr {self.optimizers[0].param_groups[0]['lr']:.7f} "
                    f"for epoch {epoch + 1})")
        return {"epoch": epoch, "total_iters": int(state["total_iters"]), "extra": state.get("extra", {}),
                "schedule_note": note}

    def load_extra(self, prefix: str | int) -> dict:
        """Return what save_training_state was given as `extra` for <prefix>, restoring nothing."""
        return safe_torch_load(self.training_state_path(str(prefix))).get("extra", {})

    def follow_current_schedule(self, finished: int) -> None:
        """Set the schedulers and learning rates to where the current options' schedule is after `finished` epochs.

        Optimiser moments and step counters stay as restored; only lr, initial_lr and the schedulers are
        rebuilt, stepping a fresh scheduler once per finished epoch exactly as an uninterrupted run does
        (bit-identical learning rates). The plateau policy depends on the measured metric, not on the
        epoch: its restored state is kept.
        """
        if self.opt.lr_policy == "plateau":
            return
        fresh = argparse.Namespace(**{**vars(self.opt), "epoch_count": 1})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
            for index, optimizer in enumerate(self.optimizers):
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] = self.opt.lr
                scheduler = networks.get_scheduler(optimizer, fresh)
                for _ in range(finished):
                    scheduler.step()
                self.schedulers[index] = scheduler

    def print_networks(self, verbose: bool) -> None:
        """Print the parameter count of each network (and the network itself when verbose)."""
        print("---------- Networks initialized -------------")
        for name, net in self.nets().items():
            if verbose:
                print(net)
            count = sum(p.numel() for p in net.parameters())
            print(f"[Network {name}] Total number of parameters : {count / 1e6:.3f} M")
        print("-----------------------------------------------")

    @staticmethod
    def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool = False) -> None:
        """Switch gradients of every parameter of nets on or off."""
        for net in nets if isinstance(nets, list) else [nets]:
            for param in net.parameters():
                param.requires_grad = requires_grad


def reseed_for_rank(rank: int) -> None:
    """Give torchrun process `rank` > 0 its own random streams, derived from the restored state and the rank.

    Only rank 0 saves a training state, so after a resume every process holds rank 0's random state and
    would draw the same reflections, crops and dropout masks. Rank 0 keeps the restored state (a
    single-process resume stays exact); every other rank reseeds python, numpy and torch from a number
    drawn from that state plus its rank: reproducible, and different on each rank.
    """
    if rank <= 0:
        return
    base = int(torch.randint(0, 2**62, (1,)).item())
    seed = base + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _as_tuple(value: Any) -> Any:
    """Return value with lists turned back into tuples (random.setstate wants the exact nesting)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


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


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; raised before the optimiser step so the weights stay finite."""

    def __init__(self, loss_name: str, value: float):
        super().__init__(f"loss {loss_name} is {value}")
        self.loss_name = loss_name

