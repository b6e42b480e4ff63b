"""Test IBCLN: python test.py --dataroot DIR --name NAME --model IBCLN --epoch final ...

Writes results/<name>/<phase>_<epoch>/images/<image>_<visual>_<kk>.png, index.html and, where testA1
holds a ground truth, metrics.csv with PSNR/SSIM of the input I and of each step T_1..T_3 (util/metrics.py).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import warnings

import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from data import create_dataset
from models import create_model
from options.base_options import run_cli
from options.test_options import TestOptions
from util import html
from util.errors import UserError
from util.metrics import psnr_ssim
from util.util import save_image
from util.visualizer import as_images

# (column label, visual label) pairs scored against the ground truth real_T_00.
SCORED = (("I", "real_I_00"), ("T1", "fake_Ts_01"), ("T2", "fake_Ts_02"), ("T3", "fake_Ts_03"))


def metric_columns() -> list[str]:
    """Return the metric column names: PSNR_I, SSIM_I, PSNR_T1, ... SSIM_T3."""
    return [f"{m}_{label}" for label, _ in SCORED for m in ("PSNR", "SSIM")]


def score(images: dict) -> list[float]:
    """Return PSNR and SSIM of I, T_1, T_2, T_3 against the ground truth, in metric_columns() order."""
    values: list[float] = []
    for _, visual in SCORED:
        values += psnr_ssim(images[visual], images["real_T_00"])
    return values


def fmt(value: float | None, digits: int) -> str:
    """Return value with the given decimals, or 'n/a'."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def means(rows: list[list[float] | None]) -> list[float | None]:
    """Return the column means over the rows that have metrics (None where there are none)."""
    scored = [r for r in rows if r is not None]
    if not scored:
        return [None] * len(metric_columns())
    return [sum(col) / len(col) for col in zip(*scored)]


def format_row(values: list[float | None] | None) -> list[str]:
    """Return metric cells: PSNR with 2 decimals, SSIM with 4, 'n/a' without ground truth."""
    if values is None:
        return ["n/a"] * len(metric_columns())
    return [fmt(v, 2 if i % 2 == 0 else 4) for i, v in enumerate(values)]


def main(opt: argparse.Namespace) -> None:
    """Run the cascade on every test image, save the images, the metrics and the HTML page."""
    dataset = create_dataset(opt).dataset
    model = create_model(opt)
    model.setup(opt)
    if opt.dropout_at_test:
        model.train()  # the released protocol: dropout stays active, outputs vary run to run
    else:
        model.eval()
    web_dir = os.path.join(opt.results_dir, opt.name, f"{opt.phase}_{opt.epoch}")
    if opt.load_iter > 0:
        web_dir = f"{web_dir}_iter{opt.load_iter}"
    img_dir = os.path.join(web_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    total = int(min(opt.num_test, len(dataset)))
    entries: list[tuple[str, list[str], list[float] | None]] = []
    # One image at a time, straight from the dataset, so that a bad file can be skipped (--skip_bad_images).
    for index in tqdm(range(total), desc="testing", unit="img"):
        try:
            data = default_collate([dataset[index]])
        except UserError as err:
            if not opt.skip_bad_images:
                raise
            warnings.warn(f"skipped: {err}", stacklevel=1)
            continue
        model.set_input(data)
        run_model(model, data)
        stem = os.path.splitext(os.path.basename(model.get_image_paths()[0]))[0]
        images = as_images(model.get_current_visuals())
        names = []
        for label, image in images.items():
            name = f"{stem}_{label}.png"
            save_image(image, os.path.join(img_dir, name))
            names.append(name)
        entries.append((stem, names, score(images) if bool(data["has_gt"][0]) else None))
    rows = [values for _, _, values in entries]
    mean = means(rows)
    write_csv(os.path.join(web_dir, "metrics.csv"), entries, mean)
    page = write_page(web_dir, opt, entries, mean)
    print(summary(entries, mean))
    print(f"results page: {os.path.abspath(page)}")


def run_model(model, data: dict) -> None:
    """Run model.test(); running out of memory becomes a UserError naming the image, its size and the way out."""
    try:
        model.test()
    except torch.OutOfMemoryError:
        height, width = data["I"].shape[-2:]
        raise UserError(f"{data['I_path'][0]}: out of memory on this {width}x{height} image; pass --tile 1024 "
                        "(tiled inference at full resolution) or --max_size 1024 (downscale large inputs), or use "
                        "the CPU (--gpu_ids -1)") from None


def write_csv(path: str, entries: list, mean: list[float | None]) -> None:
    """Write metrics.csv: one row per image (n/a without ground truth), then the mean row."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *metric_columns()])
        for stem, _, values in entries:
            writer.writerow([stem, *(["n/a"] * len(metric_columns()) if values is None else
                                     [repr(float(v)) for v in values])])
        writer.writerow(["mean", *(["n/a" if v is None else repr(float(v)) for v in mean])])


def write_page(web_dir: str, opt: argparse.Namespace, entries: list, mean: list[float | None]) -> str:
    """Write index.html: the metrics table first, then a row of images per input with its metrics."""
    page = html.HTML(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}")
    with_gt = sum(values is not None for _, _, values in entries)
    page.add_header(f"PSNR (dB) / SSIM against the ground truth T ({with_gt} of {len(entries)} images have one)")
    table_rows = [[stem, *format_row(values)] for stem, _, values in entries]
    table_rows.append(["mean", *format_row(mean)])
    page.add_table(["image", *metric_columns()], table_rows, table_id="metrics")
    for stem, names, values in entries:
        caption = stem
        if values is not None:
            cells = format_row(values)
            caption += " | " + ", ".join(f"{label}: {cells[2 * k]} dB / {cells[2 * k + 1]}"
                                         for k, (label, _) in enumerate(SCORED))
        page.add_images(names, [n[len(stem) + 1: -len(".png")] for n in names], width=opt.display_winsize,
                        caption=caption)
    return page.save()


def summary(entries: list, mean: list[float | None]) -> str:
    """Return the metrics table as text for the console."""
    header = ["image", *metric_columns()]
    rows = [[stem, *format_row(values)] for stem, _, values in entries] + [["mean", *format_row(mean)]]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(str(cell).rjust(w) for cell, w in zip(r, widths)) for r in [header, *rows]]
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main, TestOptions())
