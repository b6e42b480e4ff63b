"""What a model is built from: ModelConfig (what every model needs) and IBCLNConfig (IBCLN's networks and losses).

Python code builds a model from keywords, without the command line:

    from models import IBCLNConfig, IBCLNModel
    model = IBCLNModel(IBCLNConfig(ngf=64))                  # test phase, on the CPU
    model = IBCLNModel(IBCLNConfig(is_train=True, gpu_ids=(0,), amp="auto", vgg_weights="random"))

train.py and test.py build the same config from their options (options/model_config.py: each field takes the
option of the same name, so the field names are the flags' names). A config says what the model is, not
where a run stands: the checkpoint a run starts from, resuming and the process ranks are read from the
run's options by models/checkpoint.py. Defaults are the command line's, except that the model runs on the
CPU (gpu_ids=()) and in NCHW (channels_last="off", test.py's default being auto) unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass

import torch

from util.errors import UserError

from . import fast_path, tiling

AMP_CHOICES = ("none", "auto", "bf16", "fp16")


@dataclass(frozen=True)
class ModelConfig:
    """What every model needs: its phase, devices, checkpoint folder, seed and optimiser schedule.

    gpu_ids: the GPUs the networks run on, () for the CPU; several wrap them in DataParallel. distributed:
    wrap them in DistributedDataParallel (each torchrun process then names its one GPU). seed: the run's
    seed, recorded in every training state. The schedule fields are those of train.py's flags (docs/training.md).
    """

    is_train: bool = False
    gpu_ids: tuple[int, ...] = ()
    distributed: bool = False
    checkpoints_dir: str = "./checkpoints"
    name: str = "experiment_name"
    seed: int | None = None
    lr: float = 0.0002
    beta1: float = 0.5
    lr_policy: str = "linear"
    niter: int = 80
    niter_decay: int = 0
    lr_decay_iters: int = 50
    epoch_count: int = 1

    def __post_init__(self) -> None:
        """Take lists as tuples, then refuse a value of the wrong type with a UserError naming the keyword."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, field.name, value)
            if not has_type(value, hints[field.name]):
                raise UserError(f"{type(self).__name__}({field.name}={value!r}): expected "
                                f"{_type_name(hints[field.name])}")

    @property
    def device(self) -> torch.device:
        """Return the device the networks run on: the first of gpu_ids, or the CPU."""
        return torch.device("cuda", self.gpu_ids[0]) if self.gpu_ids else torch.device("cpu")

    @property
    def save_dir(self) -> str:
        """Return the run's checkpoint folder, <checkpoints_dir>/<name>."""
        return os.path.join(self.checkpoints_dir, self.name)


@dataclass(frozen=True)
class IBCLNConfig(ModelConfig):
    """IBCLN's networks (docs/method.md §2-§3), its losses (§4) and how it runs (flags of the same names).

    Generators: input_nc/output_nc channels, ngf filters, netG gen_drop, dropout unless no_dropout, weights
    drawn by init_type/init_gain. Discriminator (training only): netD, ndf, n_layers_D, norm. Losses:
    vgg_weights (imagenet, a .pth file or random), gan_mode. Speed: amp (none, auto, bf16, fp16),
    channels_last (auto, on, off or a bool), compile, fused_gates, no_zero_state_skip. Inference: tile
    (0 = whole images) and tile_overlap, in pixels. Training: ema_decay, the decay of an exponential moving
    average of G_T's and G_R's weights (models/ema.py), 0 = none.
    """

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    ndf: int = 64
    netG: str = "gen_drop"
    netD: str = "basic"
    n_layers_D: int = 3
    norm: str = "instance"
    init_type: str = "normal"
    init_gain: float = 0.02
    no_dropout: bool = False
    vgg_weights: str = "imagenet"
    gan_mode: str = "lsgan"
    amp: str = "none"
    channels_last: str | bool = "off"
    compile: bool = False
    fused_gates: bool = False
    no_zero_state_skip: bool = False
    tile: int = 0
    tile_overlap: int = 128
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        """Check the types, then the values of the choices (amp, channels_last), of the tiling and of ema_decay."""
        super().__post_init__()
        if self.amp not in AMP_CHOICES:
            raise UserError(f"amp={self.amp!r}: expected one of {', '.join(AMP_CHOICES)}")
        if not isinstance(self.channels_last, bool) and self.channels_last not in fast_path.SWITCH:
            raise UserError(f"channels_last={self.channels_last!r}: expected True, False or one of "
                            f"{', '.join(fast_path.SWITCH)}")
        if self.tile:
            tiling.check_tiling(self.tile, self.tile_overlap)
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay={self.ema_decay}: expected 0 (no EMA) or a decay in (0, 1), e.g. 0.999")


def has_type(value: object, hint: object) -> bool:
    """Return whether value has the type hint (int, float, str, bool, None, X | Y, tuple[X, ...]); ints are floats."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(has_type(value, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, tuple) and all(has_type(item, typing.get_args(hint)[0]) for item in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool  # a bool is an int to Python, not to a config
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _type_name(hint: object) -> str:
    """Return a type hint as it is written (int, str | bool, tuple[int, ...])."""
    return str(hint) if typing.get_origin(hint) else hint.__name__
