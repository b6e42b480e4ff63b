"""Small I/O helpers: tensors to uint8 images, PNG writing, atomic saves, safe checkpoint loading."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from util.errors import UserError


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
    """Write an (H, W, 3) uint8 array as an image file (format from the extension)."""
    Image.fromarray(image).save(path)


def mkdirs(*paths: str) -> None:
    """Create each folder (and its parents) if missing."""
    for path in paths:
        os.makedirs(path, exist_ok=True)


def atomic_torch_save(obj: Any, path: str) -> None:
    """Save obj with torch.save so that path holds either the old file or the complete new one, never a torso.

    Writes to a temporary file in the same folder, flushes it to disk, then renames it over path.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def safe_torch_load(path: str, map_location: Any = "cpu") -> Any:
    """Return torch.load(path) with weights_only=True: tensors and plain containers only, no code runs.

    A file that is missing, truncated, not a torch file, or that would need arbitrary unpickling is
    a UserError naming it.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: cannot be loaded safely as a checkpoint (corrupt, truncated, or it holds "
                        f"objects other than tensors, which weights_only loading refuses): {first_line}") from None
