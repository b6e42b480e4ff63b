"""Make a synthetic test/validation set, or a full training layout, from any folder of photos.

  python scripts/make_synthetic_set.py --photos DIR [--reflections DIR] --out OUT --n N --seed S [--size 256]
      OUT/testB/   N mixtures I made by the project's synthesis (data/synthesis.py: draw_params, synthesize,
                   is_rejected, as the training dataset does), one per photo T
      OUT/testA1/  the ground truths T (same names), OUT/testA2/ the reflection layers actually mixed in
  python scripts/make_synthetic_set.py --train --photos DIR [--reflections DIR] [--real_pairs DIR] --out OUT --n N
      OUT/trainA1/ (T) and OUT/trainA2/ (R: the --reflections photos, else the same training photos) are
                   COPIES of the photos not held out (a copy survives moving or deleting the source folder)
      OUT/val/     testB/testA1/testA2 as above from N held-out photos, disjoint from every training photo
      OUT/natural_I/, OUT/natural_T/  copies of --real_pairs DIR/blended/ and DIR/transmission_layer/ (the
                   layout of the public real-pair downloads), paired by file name
  OUT/manifest.json (written last) names the source of every file and the synthesis parameters of each mixture.

Photos are listed recursively and may be of any size, format or mode data/image_folder.load_rgb reads;
undecodable files are skipped with a warning. Test images are square crops: the shorter side resized to
--size (Lanczos), then the centre. Every random choice (photo order, which reflection, the synthesis
parameters) comes from one torch.Generator seeded with --seed, so a seed gives byte-identical files. The
script never writes into an input folder, and refuses an OUT that is not empty.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings

import numpy as np
import torch
from PIL import Image

try:
    from data import synthesis
    from data.image_folder import is_image_file, load_rgb
    from data.resize_natural_3_dataset import MAX_SYNTHESIS_TRIES, pair_real
    from util.errors import UserError, exit_on_user_error
    from util.images import to_tensor
except ModuleNotFoundError as err:  # a clone where the project is not installed: only scripts/ is on sys.path
    sys.exit(f"error: {err}: install this project first: pip install -e . in the repository root")


def list_photos(folder: str) -> list[str]:
    """Return the image files under folder, recursively, in sorted order."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: folder not found")
    found = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if is_image_file(f)]
    return sorted(found)


def square(img: Image.Image, size: int) -> Image.Image:
    """Return the centre size x size crop of img after resizing its shorter side to size (Lanczos)."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.LANCZOS)
    x, y = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((x, y, x + size, y + size))


def to_uint8(x: torch.Tensor) -> Image.Image:
    """Return a (3,H,W) tensor in [0,1] as an 8-bit RGB image (rounded)."""
    array = (x.to(torch.float64) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def flat_name(path: str, root: str) -> str:
    """Return path relative to root as one file name (folders joined by '__')."""
    return os.path.relpath(path, root).replace(os.sep, "__")


class Loader:
    """Decodes photos once each; an undecodable one is warned about once and remembered."""

    def __init__(self) -> None:
        self.bad: dict[str, str] = {}

    def load(self, path: str) -> Image.Image | None:
        """Return the photo as 8-bit RGB, or None (one warning per file) when it cannot be decoded."""
        if path in self.bad:
            return None
        try:
            return load_rgb(path)
        except UserError as err:
            self.bad[path] = str(err)
            warnings.warn(f"skipped: {err}", stacklevel=2)
            return None


def make_mixtures(t_candidates: list[str], r_pool: list[str], n: int, size: int, gen: torch.Generator,
                  loader: Loader, out: str, root: str) -> tuple[list[dict], list[str]]:
    """Write n mixtures into out/testB, testA1, testA2 from the candidates in order; return (records, T's tried)."""
    for sub in ("testB", "testA1", "testA2"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    records: list[dict] = []
    tried: list[str] = []
    for t_path in t_candidates:
        if len(records) == n:
            break
        tried.append(t_path)
        t_img = loader.load(t_path)
        if t_img is None:
            continue
        t = to_tensor(square(t_img, size))
        for _ in range(MAX_SYNTHESIS_TRIES):
            choices = [p for p in r_pool if p != t_path and p not in loader.bad]
            if not choices:
                raise UserError(f"no decodable reflection photo other than {t_path}")
            r_path = choices[int(torch.randint(len(choices), (1,), generator=gen))]
            r_img = loader.load(r_path)
            if r_img is None:
                continue
            r = to_tensor(square(r_img, size))
            params = synthesis.draw_params(size, size, gen)
            r_out, i = synthesis.synthesize(t, r, params.sigma, params.att, params.alpha, params.offset)
            if not synthesis.is_rejected(t, r, r_out, i):
                break
        else:
            warnings.warn(f"skipped: {t_path}: no usable mixture after {MAX_SYNTHESIS_TRIES} reflections "
                          "(too dark, or much brighter than the reflections)", stacklevel=2)
            continue
        name = f"{len(records):04d}_{os.path.splitext(flat_name(t_path, root))[0]}.png"
        for sub, image in (("testB", i), ("testA1", t), ("testA2", r_out)):
            to_uint8(image).save(os.path.join(out, sub, name))
        records.append({"name": name, "T": t_path, "R": r_path, "sigma": params.sigma, "att": params.att,
                        "alpha": params.alpha, "offset": list(params.offset)})
    if len(records) < n:
        raise UserError(f"only {len(records)} of the {n} mixtures asked for could be made from "
                        f"{len(t_candidates)} photos")
    return records, tried


def copy_photos(paths: list[str], root: str, dest: str, loader: Loader) -> list[str]:
    """Copy the decodable photos into dest (names flattened from their path under root); return the sources."""
    os.makedirs(dest, exist_ok=True)
    copied = []
    for path in paths:
        if loader.load(path) is not None:
            shutil.copyfile(path, os.path.join(dest, flat_name(path, root)))
            copied.append(path)
    return copied


def copy_real_pairs(folder: str, out: str, loader: Loader) -> list[list[str]]:
    """Copy blended/ -> natural_I/ and transmission_layer/ -> natural_T/ (decodable, same-size pairs only)."""
    i_dir, t_dir = os.path.join(folder, "blended"), os.path.join(folder, "transmission_layer")
    for sub in (i_dir, t_dir):
        if not os.path.isdir(sub):
            raise UserError(f"--real_pairs {folder}: no {os.path.basename(sub)}/ folder (expected blended/ and "
                            "transmission_layer/, the layout of the public real-pair downloads)")
    pairs = pair_real(list_photos(t_dir), list_photos(i_dir), t_dir, i_dir)
    for sub in ("natural_I", "natural_T"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    kept = []
    for t_path, i_path in pairs:
        t_img, i_img = loader.load(t_path), loader.load(i_path)
        if t_img is None or i_img is None:
            continue
        if t_img.size != i_img.size:
            warnings.warn(f"skipped: real pair {i_path}, {t_path} of different sizes", stacklevel=2)
            continue
        shutil.copyfile(i_path, os.path.join(out, "natural_I", flat_name(i_path, i_dir)))
        shutil.copyfile(t_path, os.path.join(out, "natural_T", flat_name(t_path, t_dir)))
        kept.append([i_path, t_path])
    return kept


def check_out(out: str, inputs: list[str]) -> None:
    """Raise a UserError when out is inside an input folder or already holds files."""
    real_out = os.path.realpath(out)
    for folder in inputs:
        real_in = os.path.realpath(folder)
        if real_out == real_in or real_out.startswith(real_in + os.sep):
            raise UserError(f"--out {out} is inside the input folder {folder}: choose a folder outside it")
    if os.path.isdir(out) and os.listdir(out):
        raise UserError(f"--out {out}: folder is not empty; choose a new folder")


def build(args: argparse.Namespace) -> dict:
    """Write the set or layout asked for by args and return its manifest."""
    inputs = [p for p in (args.photos, args.reflections, args.real_pairs) if p]
    check_out(args.out, inputs)
    if args.real_pairs and not args.train:
        raise UserError("--real_pairs belongs to --train mode")
    if args.n < 1 or args.size < 4:
        raise UserError(f"--n {args.n} --size {args.size}: need n >= 1 and size >= 4")
    photos = list_photos(args.photos)
    reflections = list_photos(args.reflections) if args.reflections else None
    if not photos:
        raise UserError(f"--photos {args.photos}: no images found")
    gen = torch.Generator().manual_seed(args.seed)
    order = [photos[k] for k in torch.randperm(len(photos), generator=gen).tolist()]
    loader = Loader()
    manifest: dict = {"mode": "train" if args.train else "test", "seed": args.seed, "size": args.size,
                      "photos": os.path.abspath(args.photos),
                      "reflections": os.path.abspath(args.reflections) if args.reflections else None}
    if not args.train:
        records, _ = make_mixtures(order, reflections or photos, args.n, args.size, gen, loader, args.out,
                                   args.photos)
        manifest["images"] = records
    else:
        # Validation T photos come first in the shuffled order and their reflections from the first n photos
        # (or from --reflections): every photo tried for validation is held out of training.
        records, tried = make_mixtures(order, reflections or order[: max(args.n, 2)], args.n, args.size, gen,
                                       loader, os.path.join(args.out, "val"), args.photos)
        held_out = set(tried) | (set() if reflections else set(order[: max(args.n, 2)]))
        training = sorted(set(order) - held_out)
        if not training:
            raise UserError(f"--photos {args.photos}: no photo left for training after holding out {len(held_out)}")
        manifest["val"] = {"images": records, "held_out": sorted(held_out)}
        manifest["trainA1"] = copy_photos(training, args.photos, os.path.join(args.out, "trainA1"), loader)
        r_root = args.reflections or args.photos
        manifest["trainA2"] = copy_photos(reflections or training, r_root, os.path.join(args.out, "trainA2"), loader)
        if args.real_pairs:
            manifest["real_pairs"] = copy_real_pairs(args.real_pairs, args.out, loader)
    manifest["skipped"] = sorted(loader.bad.values())
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--reflections", help="folder of reflection photos (default: the --photos photos)")
    parser.add_argument("--out", required=True, help="new (or empty) output folder")
    parser.add_argument("--n", type=int, required=True, help="mixtures to make (--train: held-out validation ones)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--size", type=int, default=256, help="side of the square mixtures")
    parser.add_argument("--train", action="store_true", help="lay out trainA1/trainA2 + a held-out val/ split")
    parser.add_argument("--real_pairs", help="--train: folder with blended/ + transmission_layer/ real pairs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and build; a UserError ends with one line and exit status 2."""
    args = parse_args(argv)
    manifest = exit_on_user_error(lambda: build(args))
    if args.train:
        print(f"{args.out}: trainA1 {len(manifest['trainA1'])}, trainA2 {len(manifest['trainA2'])}, "
              f"natural pairs {len(manifest.get('real_pairs', []))}, val/ {len(manifest['val']['images'])} "
              f"mixtures from {len(manifest['val']['held_out'])} held-out photos; {len(manifest['skipped'])} skipped")
    else:
        print(f"{args.out}: {len(manifest['images'])} mixtures (testB, testA1, testA2); "
              f"{len(manifest['skipped'])} skipped")


if __name__ == "__main__":
    main()
