"""Measure the peak memory of the Python API's inference per pixel: the figures behind --tile auto (models/memory.py).

Usage: python -m tools.measure_memory [--sizes 256,512,1024] [--tile_check 2048:256] [--threads 2]

For each size (square, ngf 64 with random weights, fp32) and memory format (NCHW, channels_last) a fresh
process builds the model, warms it up on a 64x64 image, resets its RSS high-water mark, runs
remove_reflection on a size x size uint8 image with tile=0, and reports the peak RSS above the RSS before the
run. A least-squares line through those points gives the fixed part and the bytes per pixel
(models/memory.py takes the larger format's). --tile_check S:T runs an S x S image in tiles of T and a T x T
image whole, both at ngf 8 (the full-size buffers are RGB planes whatever the width, and narrow networks run
fast), and reports the difference per image pixel: the full-size buffers a tiled pass keeps beside one tile's
pass. Linux only (/proc/self/status, /proc/self/clear_refs). Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, sys
import numpy as np, torch
torch.set_num_threads({threads})
from util.machine import reset_rss_peak, status_mb, trim_heap
from models import IBCLNConfig, IBCLNModel
from models.api import ReflectionRemover
model = IBCLNModel(IBCLNConfig(ngf={ngf}, channels_last={channels_last}))
model.eval()
api = ReflectionRemover(model, {ngf})
api.remove_reflection(np.zeros((64, 64, 3), np.uint8), tile=0)
image = np.random.default_rng(0).integers(0, 256, ({size}, {size}, 3), dtype=np.uint8)
trim_heap()
before = status_mb("VmRSS")
assert reset_rss_peak(), "cannot reset the RSS high-water mark"
api.remove_reflection(image, tile={tile})
print(json.dumps({{"peak_increase_mb": status_mb("VmHWM") - before}}))
"""


def peak_increase(size: int, channels_last: bool, tile: int, threads: int, ngf: int = 64) -> float:
    """Return the peak RSS increase in MiB of one remove_reflection call on a size x size image, in a fresh process."""
    code = CHILD.format(threads=threads, size=size,
                        channels_last=channels_last, tile=tile, ngf=ngf)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement at {size}² failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_increase_mb"]


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Return (fixed bytes, bytes per pixel) of the least-squares line through (pixels, MiB) points."""
    n = len(points)
    xs = [p for p, _ in points]
    ys = [mb * 2**20 for _, mb in points]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - slope * mean_x, slope


def main() -> None:
    """Measure, fit and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,512,1024", help="square image sizes (multiples of 4)")
    parser.add_argument("--tile_check", default="2048:256", help="SIZE:TILE for the tiled measurement ('' = skip)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each measuring process")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for channels_last in (False, True):
        label = "channels_last" if channels_last else "NCHW"
        points = []
        for size in sizes:
            mb = peak_increase(size, channels_last, 0, args.threads)
            points.append((size * size, mb))
            print(f"{label:>13} {size}x{size}: peak +{mb:.0f} MiB ({mb * 2**20 / size**2:.0f} bytes/pixel)", flush=True)
        fixed, per_pixel = fit(points)
        results[label] = (fixed, per_pixel)
        print(f"{label:>13} fit: {fixed / 2**20:.0f} MiB + {per_pixel:.0f} bytes/pixel")
    if args.tile_check:
        size, tile = (int(v) for v in args.tile_check.split(":"))
        for channels_last in (False, True):
            tiled = peak_increase(size, channels_last, tile, args.threads, ngf=8)
            one_tile = peak_increase(tile, channels_last, 0, args.threads, ngf=8)
            beyond = (tiled - one_tile) * 2**20 / size**2
            print(f"{'channels_last' if channels_last else 'NCHW':>13} ngf 8, {size}x{size} in tiles of {tile}: peak "
                  f"+{tiled:.0f} MiB, one {tile}x{tile} tile +{one_tile:.0f} MiB: {beyond:.0f} bytes per image pixel "
                  "beyond one tile's pass")


if __name__ == "__main__":
    main()
