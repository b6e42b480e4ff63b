"""Build the small demo dataset of demo.sh from the photos bundled with scikit-image (no download).

Usage: python scripts/make_demo_data.py DEST [--seed N] [--crops K]

Layout written under DEST (the layout train.py and test.py read, see data/resize_natural_3_dataset.py):
  trainA1/      transmission photos T: K random square crops (128-192 px) of each training photo
  trainA2/      reflection photos R: K other random square crops of each training photo
  natural_T/    stand-ins for real pairs, SYNTHETIC (there are no real reflection photos among the
  natural_I/    bundled images): T is a crop of a training photo, I = (0.8 T^2.2 + 0.45 blur(R)^2.2)^(1/2.2)
                with R a blurred crop of another training photo (a fixed blend, unlike the random one of
                data/synthesis.py); same file names in both folders
  testB/        test inputs I, made by the project's own synthesis (data/synthesis.py: draw_params with a
  testA1/       seeded torch.Generator, then synthesize) from crops of the test photos; testA1 holds the
                ground truth T under the same file names. Sizes are HxW 192x256 and one 190x250 (not a
                multiple of 4), to show that test.py takes any size
  manifest.json which photo every file comes from, the synthesis parameters of each test pair, and the
                build options; written last, so its presence marks a complete build

Photo split (test photos are never used for training):
  training: rocket, immunohistochemistry, colorwheel, stereo_motorcycle (left view), retina, coins, moon,
            grass, gravel, brick, text
  test:     astronaut, chelsea, coffee, camera, clock
  hubble_deep_field is left out: it is almost black, so the synthesis rejects most mixtures with it.
Grey photos are expanded to RGB.

Every random draw comes from numpy.random.default_rng(seed) (crops) or torch.Generator seeded from the
same seed (test synthesis), so two builds with the same seed give byte-identical files. The build is
written into DEST.partial and renamed to DEST when complete; if DEST already holds a complete build with
the same options it is reused untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

if TYPE_CHECKING:
    import torch

TRAIN_PHOTOS = ("rocket", "immunohistochemistry", "colorwheel", "stereo_motorcycle", "retina", "coins", "moon",
                "grass", "gravel", "brick", "text")
TEST_PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "clock")
# (transmission photo, reflection photo, height, width) of each test pair.
TEST_PAIRS = (
    ("astronaut", "clock", 192, 256),
    ("coffee", "camera", 192, 256),
    ("chelsea", "astronaut", 192, 256),
    ("camera", "coffee", 190, 250),
)
# Training photos used as T / R of the synthetic "real pair" stand-ins.
NATURAL_PAIRS = (
    ("rocket", "grass"),
    ("immunohistochemistry", "brick"),
    ("colorwheel", "moon"),
    ("stereo_motorcycle", "gravel"),
    ("coins", "rocket"),
    ("retina", "text"),
)
NATURAL_SIZE = 160
NATURAL_ALPHA = 0.8
NATURAL_BETA = 0.45
NATURAL_BLUR = 3.0
CROP_MIN, CROP_MAX = 128, 192
# Photos are first scaled so that their shorter side is at most this, so that a crop shows a scene, not a detail.
WORK_SIDE = 320
MAX_SYNTHESIS_TRIES = 50
MANIFEST = "manifest.json"
FOLDERS = ("trainA1", "trainA2", "natural_T", "natural_I", "testA1", "testB")


def load_photo(name: str) -> Image.Image:
    """Return the scikit-image bundled photo `name` as an 8-bit RGB PIL image."""
    import skimage.data

    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
        array = array[0]
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name}: expected 8-bit pixels, got {array.dtype}")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array[..., :3], "RGB")


def shrink(img: Image.Image, side: int) -> Image.Image:
    """Return img scaled down (bicubic, aspect kept) so that its shorter side is at most `side`."""
    w, h = img.size
    if min(w, h) <= side:
        return img
    scale = side / min(w, h)
    return img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)


def random_crop(img: Image.Image, h: int, w: int, rng: np.random.Generator) -> Image.Image:
    """Return an h x w crop of img at a random position (img must be at least that large)."""
    iw, ih = img.size
    y = int(rng.integers(0, ih - h + 1))
    x = int(rng.integers(0, iw - w + 1))
    return img.crop((x, y, x + w, y + h))


def fit_for_crop(img: Image.Image, h: int, w: int, margin: float = 1.25) -> Image.Image:
    """Return img scaled (bicubic, aspect kept) so that an h x w crop covers about 1/margin of it."""
    iw, ih = img.size
    scale = max(margin * h / ih, margin * w / iw)
    return img.resize((max(w, round(iw * scale)), max(h, round(ih * scale))), Image.BICUBIC)


def ensure_fits(img: Image.Image, h: int, w: int) -> Image.Image:
    """Return img, scaled up (bicubic, aspect kept) only if an h x w crop does not fit in it."""
    iw, ih = img.size
    if ih >= h and iw >= w:
        return img
    return fit_for_crop(img, h, w, 1.0)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """Return an RGB PIL image as a float32 tensor (3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def to_image(array: np.ndarray) -> Image.Image:
    """Return a [0, 1] float (H, W, 3) array as an 8-bit RGB PIL image (rounded to nearest)."""
    return Image.fromarray(np.clip(np.rint(np.asarray(array, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8))


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """Return a [0, 1] float (3, H, W) tensor as an 8-bit RGB PIL image."""
    return to_image(x.permute(1, 2, 0).numpy())


def natural_blend(t: Image.Image, r: Image.Image) -> Image.Image:
    """Return the synthetic stand-in of a real mixture: T plus a blurred R, blended in linear light."""
    t_lin = (np.asarray(t, dtype=np.float64) / 255.0) ** 2.2
    r_blur = r.filter(ImageFilter.GaussianBlur(NATURAL_BLUR))
    r_lin = (np.asarray(r_blur, dtype=np.float64) / 255.0) ** 2.2
    return to_image(np.clip(NATURAL_ALPHA * t_lin + NATURAL_BETA * r_lin, 0.0, 1.0) ** (1.0 / 2.2))


def build(dest: str, seed: int, crops: int) -> dict:
    """Write the whole dataset into dest (which must not exist) and return its manifest."""
    # Imported here so that reusing a build does not pay for importing torch.
    import torch

    try:
        from data import synthesis
    except ModuleNotFoundError as err:  # a clone where the project is not installed: only scripts/ is on sys.path
        sys.exit(f"error: {err}: install this project first: pip install -e . in the repository root")

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    for folder in FOLDERS:
        os.makedirs(os.path.join(dest, folder))
    sources: dict[str, str] = {}
    photos = {name: shrink(load_photo(name), WORK_SIDE) for name in TRAIN_PHOTOS}
    for name in TRAIN_PHOTOS:
        for folder in ("trainA1", "trainA2"):
            for k in range(crops):
                side = int(rng.integers(CROP_MIN, CROP_MAX + 1))
                img = random_crop(ensure_fits(photos[name], side, side), side, side, rng)
                rel = f"{folder}/{name}_{k:02d}.png"
                img.save(os.path.join(dest, rel))
                sources[rel] = name
    for k, (t_name, r_name) in enumerate(NATURAL_PAIRS):
        size = NATURAL_SIZE
        t = random_crop(ensure_fits(photos[t_name], size, size), size, size, rng)
        r = random_crop(ensure_fits(photos[r_name], size, size), size, size, rng)
        file = f"{k:02d}_{t_name}.png"
        t.save(os.path.join(dest, "natural_T", file))
        natural_blend(t, r).save(os.path.join(dest, "natural_I", file))
        sources[f"natural_T/{file}"] = t_name
        sources[f"natural_I/{file}"] = f"{t_name}+{r_name}"
    test_photos = {name: load_photo(name) for name in TEST_PHOTOS}
    test_pairs = []
    for k, (t_name, r_name, h, w) in enumerate(TEST_PAIRS):
        file = f"{k:02d}_{t_name}.png"
        for _ in range(MAX_SYNTHESIS_TRIES):
            t = to_tensor(random_crop(fit_for_crop(test_photos[t_name], h, w), h, w, rng))
            r = to_tensor(random_crop(fit_for_crop(test_photos[r_name], h, w), h, w, rng))
            params = synthesis.draw_params(h, w, gen)
            r_out, i = synthesis.synthesize(t, r, params.sigma, params.att, params.alpha, params.offset)
            if not synthesis.is_rejected(t, r, r_out, i):
                break
        else:
            raise RuntimeError(f"no usable mixture of {t_name} and {r_name} in {MAX_SYNTHESIS_TRIES} tries")
        tensor_to_image(t).save(os.path.join(dest, "testA1", file))
        tensor_to_image(i).save(os.path.join(dest, "testB", file))
        sources[f"testA1/{file}"] = t_name
        sources[f"testB/{file}"] = f"{t_name}+{r_name}"
        test_pairs.append({"file": file, "T": t_name, "R": r_name, "height": h, "width": w,
                           "sigma": params.sigma, "att": params.att, "alpha": params.alpha,
                           "offset": list(params.offset)})
    manifest = {"options": {"seed": seed, "crops": crops}, "train_photos": list(TRAIN_PHOTOS),
                "test_photos": list(TEST_PHOTOS), "test_pairs": test_pairs, "sources": sources}
    # Written last: its presence marks a complete build.
    with open(os.path.join(dest, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def make_demo_data(dest: str, seed: int = 0, crops: int = 6) -> bool:
    """Build the demo dataset at dest unless a complete build with these options is there; return True if built."""
    dest = os.path.abspath(dest)
    options = {"seed": seed, "crops": crops}
    manifest_path = os.path.join(dest, MANIFEST)
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            found = json.load(f).get("options")
        if found != options:
            raise SystemExit(f"error: {dest} holds a demo build with options {found}, not {options}; "
                             "remove it or choose another folder")
        print(f"demo data: reusing the complete build in {dest}")
        return False
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise SystemExit(f"error: {dest} exists but is not a complete demo build (no {MANIFEST}); "
                         "remove it or choose another folder")
    partial = dest + ".partial"
    if os.path.exists(partial):
        shutil.rmtree(partial)  # left over from an interrupted build
    build(partial, seed, crops)
    if os.path.isdir(dest):
        os.rmdir(dest)  # empty
    os.replace(partial, dest)
    counts = ", ".join(f"{folder} {len(os.listdir(os.path.join(dest, folder)))}" for folder in FOLDERS)
    print(f"demo data: built {dest} ({counts})")
    return True


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and build the dataset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("dest", help="folder to create, e.g. datasets/reflection_demo")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--crops", type=int, default=6, help="crops per training photo in trainA1 and in trainA2")
    args = parser.parse_args(argv)
    if args.crops < 1:
        parser.error("--crops must be at least 1")
    make_demo_data(args.dest, args.seed, args.crops)


if __name__ == "__main__":
    main()
