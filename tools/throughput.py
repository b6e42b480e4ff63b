"""How fast the training data pipeline serves samples: the figure behind tools/benchmark_data.py and the data
section of tools/benchmark.py."""

from __future__ import annotations

import contextlib
import io
import os
import time

import numpy as np
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
