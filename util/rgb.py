"""Any decoded PIL image to 8-bit RGB: the one rule for the datasets (data/image_folder.py) and the Python API."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Grayscale 16/32-bit modes Pillow uses for 16-bit PNGs and TIFFs, with their maximum value.
_WIDE_GRAY_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535, "F": 1.0}


def to_rgb8(img: Image.Image) -> Image.Image:
    """Return img converted to 8-bit RGB (the rules of data/image_folder.py load_rgb)."""
    if img.mode in _WIDE_GRAY_MODES:
        scale = 255.0 / _WIDE_GRAY_MODES[img.mode]
        array = np.asarray(img, dtype=np.float64) * scale
        return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img
