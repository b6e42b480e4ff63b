"""Images: uint8 images to tensors and back, reflect-padding to a multiple, a model's visuals as labelled images,
image files written atomically."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from util.files import atomic_write


def to_tensor(image: Image.Image | np.ndarray) -> Tensor:
    """Return an 8-bit RGB image (PIL image or HxWx3 uint8 array) as a float tensor (3, H, W) in [0, 1]."""
    array = np.array(image, dtype=np.uint8, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Return image (C,H,W) or (N,C,H,W) reflect-padded at the bottom and right to H, W divisible by multiple.

    The padding of test.py --keep_size and of the Python API; H and W must be at least `multiple`, which
    reflect padding needs.
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    return torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="reflect")


def tensor2im(image: Tensor | np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 array from a [0,1] tensor (C,H,W) or (1,C,H,W), rounded to nearest."""
    if isinstance(image, np.ndarray):
        return image
    array = image.detach().float().cpu()
    if array.dim() == 4:
        array = array[0]
    if array.shape[0] == 1:
        array = array.repeat(3, 1, 1)
    array = array.clamp(0, 1).mul(255).round().to(torch.uint8)
    return array.permute(1, 2, 0).numpy()


def save_image(image: np.ndarray, path: str) -> None:
    """Write an (H, W, 3) uint8 array as an image file (format from the extension), atomically (see atomic_write)."""
    img = Image.fromarray(image)
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    atomic_write(path, lambda f: img.save(f, format=fmt), sync=False)


def flatten_visuals(visuals: OrderedDict) -> OrderedDict:
    """Return label -> first image of the batch, labels '<visual>_<kk>' (a cascade list gives 00, 01, ...)."""
    flat: OrderedDict = OrderedDict()
    for name, value in visuals.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for k, item in enumerate(items):
            flat[f"{name}_{k:02d}"] = item
    return flat


def as_images(visuals: OrderedDict) -> OrderedDict[str, np.ndarray]:
    """Return label -> uint8 image for every flattened visual."""
    return OrderedDict((label, tensor2im(v)) for label, v in flatten_visuals(visuals).items() if isinstance(v, Tensor))
