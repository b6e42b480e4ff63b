"""Finding image files in a folder and decoding any of them to an 8-bit RGB PIL image."""

from __future__ import annotations

import os
import warnings

from PIL import Image, ImageOps

from util.errors import UserError
from util.rgb import to_rgb8

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(filename: str) -> bool:
    """Return True if the name has an image extension (case-insensitive)."""
    return filename.lower().endswith(IMG_EXTENSIONS)


def make_dataset(folder: str, max_dataset_size: float = float("inf"), recursive: bool = True) -> list[str]:
    """Return the image paths under folder and its sub-folders, sorted (at most max_dataset_size of them).

    Sub-folders are walked recursively, as the released code did (os.walk), so PASCAL VOC-style trees and
    per-scene folders are read whole. Symbolic links to folders are followed, each real folder once (a link
    back up the tree cannot loop). The order is the sorted path, the same on every machine. With
    recursive=False only the files directly in folder are listed (a SIR² scene, a CEILNet folder).
    """
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: folder not found")
    paths = []
    visited = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        if not recursive:
            dirs[:] = []
        real = os.path.realpath(current)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs.sort()
        paths += [os.path.join(current, f) for f in files
                  if is_image_file(f) and os.path.isfile(os.path.join(current, f))]
    paths.sort()
    return paths[: int(min(max_dataset_size, len(paths)))]


def count_by_folder(folder: str, paths: list[str]) -> str:
    """Return one line saying how many of paths lie in folder itself and in each of its sub-folders."""
    counts: dict[str, int] = {}
    for path in paths:
        sub = os.path.dirname(os.path.relpath(path, folder)) or "."
        counts[sub] = counts.get(sub, 0) + 1
    line = f"{folder}: {len(paths)} image(s)"
    if set(counts) != {"."}:
        shown = [f"{sub} {n}" for sub, n in sorted(counts.items())]
        more = f", ... ({len(shown) - 10} more)" if len(shown) > 10 else ""
        line += f" in {len(counts)} folder(s): {', '.join(shown[:10])}{more}"
    return line


def load_rgb(path: str) -> Image.Image:
    """Return the image at path as an 8-bit RGB PIL image, upright according to its EXIF orientation.

    Grayscale and palette images are expanded to RGB; 16-bit images are scaled to 8 bits; images with
    transparency (RGBA, LA, palette with a transparent colour) are composited on white, which is how a
    viewer shows them and keeps transparent areas from turning into black "scenes". A file that cannot
    be decoded is a UserError naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as err:
        raise UserError(f"{path}: cannot be decoded as an image ({type(err).__name__}: {err})") from None
    return to_rgb8(img)
