"""Throughput of the training data pipeline (resize_natural_3, synthetic mixtures) for several --num_threads.

Usage: python -m tools.benchmark_data [--samples 200] [--warmup 8] [--threads 0 1 2] [--crop_size 256]

Writes trainA1/trainA2 JPEGs made from scikit-image's bundled photos into a temporary folder, builds the
DataLoader of train.py (default options: resize_and_crop to 256, batch size 2, flips, on-the-fly synthesis),
discards a warm-up (which includes starting the workers), then times the next --samples samples and prints
samples/s per setting with the machine's CPU, core count and torch version. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import torch

try:
    from tools.throughput import measure, write_photos  # noqa: TID251 (a shared module of tools/)
    from util.machine import cpu_model, usable_cores
except ModuleNotFoundError as err:  # run as a file: the repository root is not on sys.path
    sys.exit(f"error: {err}: run it from the repository root as a module: python -m tools.benchmark_data")


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
