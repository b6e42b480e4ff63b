"""Throughput of the training data pipeline (resize_natural_3, synthetic mixtures) for several --num_threads.

Usage: python scripts/benchmark_data.py [--samples 200] [--warmup 8] [--threads 0 1 2] [--crop_size 256]

Writes trainA1/trainA2 JPEGs made from scikit-image's bundled photos into a temporary folder, builds the
DataLoader of train.py (default options: resize_and_crop to 256, batch size 2, flips, on-the-fly synthesis),
discards a warm-up (which includes starting the workers), then times the next --samples samples and prints
samples/s per setting with the machine's CPU, core count and torch version. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

from data import create_dataset
from options.train_options import TrainOptions

# Colour photos that ship with scikit-image (no download), as (T photos, R photos).
T_PHOTOS = {"astronaut": skdata.astronaut, "coffee": skdata.coffee, "rocket": skdata.rocket,
            "motorcycle": lambda: skdata.stereo_motorcycle()[0]}
# Bright ones: a dark R (e.g. hubble_deep_field) fails the rejection test of docs/method.md §5 step 7 most of the time.
R_PHOTOS = {"chelsea": skdata.chelsea, "ihc": skdata.immunohistochemistry,
            "motorcycle_right": lambda: skdata.stereo_motorcycle()[1], "coffee": skdata.coffee}


def write_photos(root: str) -> None:
    """Write the T and R photos as JPEGs (quality 90) under root/trainA1 and root/trainA2."""
    for folder, names in (("trainA1", T_PHOTOS), ("trainA2", R_PHOTOS)):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for name, load in names.items():
            array = np.asarray(load())
            if array.ndim == 3 and array.shape[2] == 4:
                array = array[..., :3]
            Image.fromarray(array).convert("RGB").save(os.path.join(root, folder, f"{name}.jpg"), quality=90)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Return the number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure(root: str, num_threads: int, samples: int, warmup: int, batch_size: int, crop_size: int) -> float:
    """Return training samples per second through create_dataset's DataLoader after warm-up batches."""
    args = ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", os.path.join(root, "ck"),
            "--num_threads", str(num_threads), "--batch_size", str(batch_size), "--seed", "0",
            "--load_size", str(crop_size), "--crop_size", str(crop_size),
            "--dataset_size", str(warmup + samples)]
    with contextlib.redirect_stdout(io.StringIO()):  # the options table and dataset notes
        opt = TrainOptions().parse(args, save=False)
        loader = create_dataset(opt)
    batches = iter(loader)
    seen = 0
    while seen < warmup:
        seen += len(next(batches)["alpha"])
    timed = 0
    start = time.perf_counter()
    for batch in batches:
        timed += len(batch["alpha"])
    elapsed = time.perf_counter() - start
    return timed / elapsed


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples timed per setting")
    parser.add_argument("--warmup", type=int, default=8, help="samples discarded first (worker start-up included)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2], help="--num_threads values to time")
    parser.add_argument("--batch_size", type=int, default=2, help="--batch_size of the DataLoader")
    parser.add_argument("--crop_size", type=int, default=256, help="--load_size and --crop_size")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="torch.set_num_threads in the main process (used by --num_threads 0); 0 = torch's default")
    args = parser.parse_args()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)

    print(f"CPU: {cpu_model()}; cores usable: {usable_cores()} (os.cpu_count {os.cpu_count()}); "
          f"torch {torch.__version__} (intra-op threads {torch.get_num_threads()}); Python {platform.python_version()}")
    print(f"training samples: synthetic mixtures, {args.crop_size}x{args.crop_size} crops (resize_and_crop), "
          f"batch size {args.batch_size}, {args.warmup} warm-up + {args.samples} timed samples per setting",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ibcln_bench_") as root:
        write_photos(root)
        for num_threads in args.threads:
            rate = measure(root, num_threads, args.samples, args.warmup, args.batch_size, args.crop_size)
            rows.append((num_threads, rate))
            print(f"  --num_threads {num_threads}: {rate:.1f} samples/s", flush=True)
    print()
    print("| --num_threads | samples/s | ms/sample |")
    print("|---:|---:|---:|")
    for num_threads, rate in rows:
        print(f"| {num_threads} | {rate:.1f} | {1000 / rate:.1f} |")


if __name__ == "__main__":
    main()
