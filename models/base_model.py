"""BaseModel: what every model shares (devices, schedulers, visuals and their roles, losses); VisualRoles."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import parallel, schedule
from .config import ModelConfig
from .ema import Averages

# A page cell: (visual label, caption, score label or None); None leaves the cell empty.
Cell = tuple[str, str, str | None] | None


@dataclass(frozen=True)
class VisualRoles:
    """What a model's visuals mean to evaluation and pages: what is scored, which is the result, what is shown.

    Visual labels are those of util.images.flatten_visuals ('<visual>_<kk>'). steps lists (score label,
    visual label) in the order they are scored against the ground_truth visual; input and result name
    two of those score labels. rows lay out the page grid; hidden visuals are not shown there.
    """

    steps: tuple[tuple[str, str], ...]
    ground_truth: str
    input: str
    result: str
    rows: tuple[tuple[Cell, ...], ...]
    hidden: frozenset[str] = frozenset()

    @property
    def labels(self) -> tuple[str, ...]:
        """Return the score labels in scoring order."""
        return tuple(label for label, _ in self.steps)

    def visual(self, label: str) -> str:
        """Return the visual label scored under the score label."""
        return dict(self.steps)[label]


class BaseModel(ABC):
    """Subclasses set loss_names, model_names, visual_names, roles and optimizers, and implement the abstract methods.

    A model is built from its config (config_class, models/config.py) and changes no global torch setting:
    cuDNN's benchmark and deterministic modes are the drivers' choice (options/base_options.select_kernels).
    Checkpoints are the pix2pix format: ``<epoch>_net_<name>.pth`` holding a plain state_dict (no
    ``module.`` prefix). Beside them, ``<epoch>_train_state.pth`` holds what an exact resume needs
    (models/checkpoint.py, which also loads the networks a run starts from). A model that keeps an EMA of some
    networks' weights (models/ema.py) holds it in ``averages`` by network name; it is saved beside them as
    ``<epoch>_net_<name>_ema.pth``.
    """

    roles: VisualRoles  # set by each subclass: what evaluation scores and pages show
    config_class: type[ModelConfig] = ModelConfig  # each subclass names its own

    def __init__(self, config: ModelConfig):
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a config of type {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config
        self.gpu_ids = list(config.gpu_ids)
        self.is_train = config.is_train
        self.device = config.device
        self.save_dir = config.save_dir
        # The run's seed, saved in every training state; a resumed run without one draws it after the build.
        self.seed = config.seed
        self.loss_names: list[str] = []
        self.model_names: list[str] = []
        self.visual_names: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        self.averages: dict[str, Averages] = {}  # network name -> its EMA; empty without one

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

    def setup(self, verbose: bool = False) -> None:
        """Create the schedulers when training and print the networks (with their layers when verbose).

        The networks a run starts from (a checkpoint when testing or resuming, generators when fine-tuning)
        are loaded by models/checkpoint.load_for_run, before this.
        """
        if self.is_train:
            self.schedulers = [schedule.get_scheduler(o, self.config) for o in self.optimizers]
        self.print_networks(verbose)

    def nets(self) -> dict[str, nn.Module]:
        """Return the networks by name, unwrapped from DataParallel."""
        return {name: parallel.unwrap(getattr(self, "net" + name)) for name in self.model_names}

    def eval(self) -> None:
        """Put every network in eval mode."""
        for net in self.nets().values():
            net.eval()

    def train(self) -> None:
        """Put every network in train mode."""
        for net in self.nets().values():
            net.train()

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within: every network with an EMA holds its averaged weights (validation scores them); after: its own
        weights again, bit for bit. Nothing changes for a model without averages."""
        for averages in self.averages.values():
            averages.swap()
        try:
            yield
        finally:
            for averages in self.averages.values():
                averages.swap()

    def test(self, scored_only: bool = False) -> None:
        """Run forward without gradients (inference mode) and compute the visuals; models may override it.

        scored_only: the caller only scores the outputs (validation), so a model may skip the others.
        """
        with torch.inference_mode():
            self.forward()

    def update_learning_rate(self, metric: float | None = None) -> float:
        """Step the schedulers and return the new learning rate.

        The epoch-based policies step at the end of every epoch (metric None); the plateau policy steps after
        each validation, on its metric (higher is better; a NaN, when no image could be scored, is no step).
        """
        plateau = self.config.lr_policy == "plateau"
        for scheduler in self.schedulers:
            if metric is None and not plateau:
                scheduler.step()
            elif metric is not None and plateau and not math.isnan(metric):
                scheduler.step(metric)
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

    def follow_current_schedule(self, finished: int) -> None:
        """Set the schedulers and learning rates to where the current options' schedule is after `finished` epochs.

        Optimiser moments and step counters stay as restored; only lr, initial_lr and the schedulers are
        rebuilt, stepping a fresh scheduler once per finished epoch exactly as an uninterrupted run does
        (bit-identical learning rates). The plateau policy depends on the measured metric, not on the
        epoch: its restored state is kept.
        """
        if self.config.lr_policy == "plateau":
            return
        fresh = dataclasses.replace(self.config, epoch_count=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
            for index, optimizer in enumerate(self.optimizers):
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] = self.config.lr
                scheduler = schedule.get_scheduler(optimizer, fresh)
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


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; raised before the optimiser step so the weights stay finite.

    Under torchrun every process raises it at the same step; loss_name is None in a process whose own
    losses were finite (another process's were not).
    """

    def __init__(self, loss_name: str | None, value: float = math.nan):
        super().__init__(f"loss {loss_name} is {value}" if loss_name else "a loss is NaN or Inf in another process")
        self.loss_name = loss_name

