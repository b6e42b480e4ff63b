"""Remove reflections from your own photos: python remove_reflection.py INPUT [INPUT ...] [options]

INPUT: image files and/or folders (read recursively). Writes <out>/<name>_T.png (and <name>_R.png with
--save_reflection) at each input's original size; a folder's sub-folders are mirrored under --out. The
pixels are test.py --keep_size's T_3 (or T_k with --steps k) for the same weights and flags: this command is
a loop over the Python API (models/api.py), which runs test.py's inference. docs/usage.md has the details.
Exit status: 0, 1 when an input was skipped (missing or undecodable file, reported in one line each), 2 on
a usage error (bad option, missing weights).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from data.image_folder import load_rgb, make_dataset
from models.api import DEFAULT_WEIGHTS, load_ibcln
from util import distributed
from util.errors import UserError, exit_on_user_error
from util.images import save_image

DEFAULT_OUT = os.path.join("results", "remove_reflection")


@dataclass(frozen=True)
class Job:
    """One input image and the output name (without _T.png) it gets under --out."""

    path: str
    name: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split(":", 1)[0] + ".",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders (read recursively)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS,
                        help="folder holding <epoch>_net_G_T.pth and <epoch>_net_G_R.pth")
    parser.add_argument("--epoch", default="final", help="which checkpoint prefix to load: final, latest, 5, ...")
    parser.add_argument("--ema", action="store_true",
                        help="load the EMA weights <epoch>_net_G_T_ema.pth / _G_R_ema.pth of a run trained with "
                             "--ema_decay")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--save_reflection", action="store_true", help="also write the reflection <name>_R.png")
    parser.add_argument("--device", default="auto", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: bf16 (fp16 on GPUs without bf16); on a CPU only with bfloat16 "
                             "instructions; outputs within about a grey level of fp32")
    parser.add_argument("--tile", default="auto",
                        help="auto = tile only when a whole-image pass would not fit in memory; N = tiles of N px "
                             "(a multiple of 4) for images larger than that; 0 = never tile")
    parser.add_argument("--steps", type=int, default=3, choices=[1, 2, 3],
                        help="write T_k of cascade step k (fewer steps run faster)")
    args = parser.parse_args(argv)
    if args.tile != "auto":
        try:
            args.tile = int(args.tile)
        except ValueError:
            parser.error(f"--tile {args.tile}: expected auto, 0 or a tile size in pixels")
        if args.tile < 0 or args.tile % 4:
            parser.error(f"--tile {args.tile}: expected a multiple of 4 (or 0 for no tiling, or auto)")
    return args


def collect(inputs: list[str], out: str) -> tuple[list[Job], list[str]]:
    """Return the images to process (named for --out) and one message per input that cannot be used.

    A folder contributes its images (recursively, sorted) named by their path under it, except those under
    --out (earlier results); a file is taken whatever its extension. Names that would collide get their
    extension, then a number, appended.
    """
    jobs: list[tuple[str, str]] = []
    problems: list[str] = []
    out_real = os.path.realpath(out)
    for item in inputs:
        if os.path.isdir(item):
            paths = [p for p in make_dataset(item)
                     if not os.path.realpath(p).startswith(out_real + os.sep)]
            if not paths:
                problems.append(f"{item}: no images found (extensions: .jpg .png .tif .webp ...)")
            jobs += [(p, os.path.splitext(os.path.relpath(p, item))[0]) for p in paths]
        elif os.path.isfile(item):
            jobs.append((item, os.path.splitext(os.path.basename(item))[0]))
        else:
            problems.append(f"{item}: no such file or folder")
    return _unique_names(jobs), problems


def _unique_names(jobs: list[tuple[str, str]]) -> list[Job]:
    """Return the jobs with names made unique: a shared name gets the file's extension, then _2, _3, ..."""
    counts: dict[str, int] = {}
    for _, name in jobs:
        counts[name] = counts.get(name, 0) + 1
    taken: set[str] = set()
    unique = []
    for path, name in jobs:
        if counts[name] > 1:
            name = f"{name}_{os.path.splitext(path)[1].lstrip('.').lower() or 'noext'}"
        candidate, k = name, 2
        while candidate in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate)
        unique.append(Job(path, candidate))
    return unique


def output_paths(job: Job, out: str, reflection: bool) -> list[str]:
    """Return the files written for job: <out>/<name>_T.png and, with reflection, <name>_R.png."""
    return [os.path.join(out, f"{job.name}_{layer}.png") for layer in ("T", "R")[: 2 if reflection else 1]]


def rate(count: int, seconds: float) -> str:
    """Return count / seconds with three significant digits (0.00321, 1.25, 12.5)."""
    return f"{count / seconds:.3g}" if seconds > 0 else "n/a"


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 all written, 1 some inputs skipped)."""
    args = parse_args(argv)
    distributed.refuse_torchrun("remove_reflection.py")
    model = load_ibcln(args.weights, device=args.device, epoch=args.epoch, amp=args.amp, ema=args.ema)
    jobs, problems = collect(args.inputs, args.out)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    inputs = {os.path.realpath(job.path) for job in jobs}
    print(f"IBCLN ({', '.join(model.weights)}) on {model.describe()}: {len(jobs)} image(s), T_{args.steps} "
          f"-> {args.out}")
    written = skipped = 0
    start = time.perf_counter()
    # The rate goes in the postfix: tqdm's own turns slow rates into s/img, or rounds them to 0.00 img/s.
    bar = tqdm(jobs, unit="img", desc="removing reflections", disable=not jobs,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    for job in bar:
        try:
            targets = output_paths(job, args.out, args.save_reflection)
            clash = [t for t in targets if os.path.realpath(t) in inputs]
            if clash:
                raise UserError(f"{job.path}: its output {clash[0]} is one of the inputs; choose another --out")
            image = np.asarray(load_rgb(job.path))
            t, r = model.remove_reflection(image, steps=args.steps, tile=args.tile, reflection=args.save_reflection)
        except UserError as err:
            tqdm.write(f"skipped: {err}", file=sys.stderr)
            skipped += 1
            continue
        plan = model.last_plan
        if plan is not None and plan.tile:
            tqdm.write(f"{job.path}: {plan.describe(image.shape[0], image.shape[1])}")
        os.makedirs(os.path.dirname(targets[0]), exist_ok=True)
        for target, layer in zip(targets, (t, r)):
            save_image(layer, target)
        written += 1
        bar.set_postfix_str(f"{rate(written, time.perf_counter() - start)} images/s")
    bar.close()
    seconds = time.perf_counter() - start
    skipped += len(problems)
    print(f"done: {written} written, {skipped} skipped, in {seconds:.1f} s ({rate(written, seconds)} images/s); "
          f"results in {os.path.abspath(args.out)}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
