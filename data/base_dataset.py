"""BaseDataset and the pix2pix-family --preprocess transforms, with every random draw taken from a Generator."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.utils.data as torch_data
from PIL import Image

from util.errors import UserError

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


class BaseDataset(torch_data.Dataset, ABC):
    """A dataset that adds its own flags through modify_commandline_options."""

    def __init__(self, opt: argparse.Namespace):
        self.opt = opt
        self.root = opt.dataroot

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Return the parser with this dataset's own flags added."""
        return parser

    @staticmethod
    def check_test_options(opt: argparse.Namespace, prefix: str = "--") -> None:
        """Raise a UserError for test-time options this dataset cannot run with; prefix names the flags in the
        message (validation during training passes --val_, its flags' prefix)."""

    @abstractmethod
    def __len__(self) -> int:
        """Return the number of samples in an epoch."""

    @abstractmethod
    def __getitem__(self, index: int) -> dict:
        """Return one sample as a dict of tensors and metadata."""

    def size_policy(self) -> str:
        """Return one line saying at which size test images are run and scored."""
        return "size: as the dataset gives it"

    def size_policy_name(self) -> str:
        """Return the short name of the size policy, for the JSON of evaluate.py."""
        return "dataset"


@dataclass(frozen=True)
class GeometryParams:
    """Where to crop (fractions of the free room, so one draw fits images of any size) and whether to flip."""

    crop_fy: float
    crop_fx: float
    flip: bool


def draw_geometry(generator: torch.Generator, no_flip: bool) -> GeometryParams:
    """Return random crop fractions in [0,1) and a flip decision (never when no_flip)."""
    fy, fx, flip = torch.rand(3, generator=generator).tolist()
    return GeometryParams(fy, fx, (not no_flip) and flip < 0.5)


def _scale_width(img: Image.Image, target: int, min_height: int) -> Image.Image:
    w, h = img.size
    new_w = target
    new_h = max(int(round(target * h / w)), min_height)
    return img if (w, h) == (new_w, new_h) else img.resize((new_w, new_h), Image.BICUBIC)


def _ensure_min_side(img: Image.Image, side: int) -> Image.Image:
    """Return img, upscaled (bicubic, aspect kept) when its shorter side is below ``side``, so a crop fits."""
    w, h = img.size
    if min(w, h) >= side:
        return img
    scale = side / min(w, h)
    return img.resize((max(side, int(round(w * scale))), max(side, int(round(h * scale)))), Image.BICUBIC)


def _crop(img: Image.Image, size: int, params: GeometryParams) -> Image.Image:
    w, h = img.size
    x = int(params.crop_fx * (w - size + 1))
    y = int(params.crop_fy * (h - size + 1))
    return img.crop((x, y, x + size, y + size))


def round_down_to_4(img: Image.Image) -> Image.Image:
    """Return img resized (bilinear, as the released code) to H//4*4 x W//4*4, unchanged if already so."""
    w, h = img.size
    new_w, new_h = w // 4 * 4, h // 4 * 4
    if new_w == 0 or new_h == 0:
        raise UserError(f"image of {w}x{h} pixels is smaller than the 4x4 the network needs")
    return img if (new_w, new_h) == (w, h) else img.resize((new_w, new_h), Image.BILINEAR)


def align_down(img: Image.Image, multiple: int) -> Image.Image:
    """Return img resized (bicubic) to H//multiple*multiple x W//multiple*multiple, unchanged if already so.

    The ERRNet-family test loaders' alignment (``x.resize((w, h))`` with PIL's default filter, which is bicubic
    for RGB images since Pillow 7), applied to the input and the ground truth alike.
    """
    w, h = img.size
    new_w, new_h = w // multiple * multiple, h // multiple * multiple
    if new_w == 0 or new_h == 0:
        raise UserError(f"image of {w}x{h} pixels has a side shorter than {multiple}, the multiple it is aligned to")
    return img if (new_w, new_h) == (w, h) else img.resize((new_w, new_h), Image.BICUBIC)


def apply_preprocess(img: Image.Image, opt: argparse.Namespace, params: GeometryParams) -> Image.Image:
    """Return img after --preprocess and the flip of params; the size is rounded down to a multiple of 4.

    Images smaller than --crop_size are first upscaled (bicubic, aspect kept) so that the crop fits,
    rather than failing: a documented choice for small training photos.
    """
    mode = opt.preprocess
    if mode not in PREPROCESS_MODES:
        raise UserError(f"--preprocess {mode}: expected one of {', '.join(PREPROCESS_MODES)}")
    if mode == "resize_and_crop":
        img = img.resize((opt.load_size, opt.load_size), Image.BICUBIC)
    elif mode.startswith("scale_width"):
        img = _scale_width(img, opt.load_size, opt.crop_size)
    if "crop" in mode:
        img = _crop(_ensure_min_side(img, opt.crop_size), opt.crop_size, params)
    img = round_down_to_4(img)
    if params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img
