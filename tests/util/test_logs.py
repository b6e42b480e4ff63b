"""The logs (util/logs.py): loss_log.txt and val_log.csv read back for the curves, cut back to a resumed point;
metrics.csv."""

from __future__ import annotations

import math

import pytest
from helpers import VAL_HEADER

from util.logs import (
    LossLog,
    MetricsCSV,
    append_val_row,
    read_loss_log,
    read_val_log,
    read_val_rows,
    truncate_loss_log,
    truncate_val_log,
)

LABELS = ("I", "T_1")


def test_a_resumed_run_cuts_the_loss_lines_after_its_position(tmp_path):
    path = tmp_path / "loss_log.txt"
    log = LossLog(str(path))
    log.start()
    for epoch, iters in ((1, 4), (1, 8), (2, 4), (2, 8)):
        log.append(LossLog.line(epoch, iters, {"D": 0.5}, 0.1, 0.1, samples=8 * (epoch - 1) + iters))
    log.start()  # a resume that trained on and was stopped again
    log.append(LossLog.line(3, 4, {"D": 0.5}, 0.1, 0.1, samples=20))
    lines = path.read_text().splitlines()
    assert truncate_loss_log(str(path), 2, 6) == 3  # resumed at sample 6 of epoch 2
    assert path.read_text().splitlines() == lines[:4]
    assert truncate_loss_log(str(path), 2, 4) == 0
    assert truncate_loss_log(str(path), 1, 8) == 1 and path.read_text().splitlines() == lines[:3]
    assert truncate_loss_log(str(tmp_path / "none.txt"), 1, 0) == 0


def test_a_resumed_run_cuts_the_validation_rows_of_later_epochs(tmp_path):
    path = tmp_path / "val_log.csv"
    for epoch in (1, 2, 3):
        append_val_row(str(path), {"epoch": epoch, "samples": 4 * epoch, "lr": 0.0002, "seconds": 0.5, "images": 2,
                                   "PSNR_I": 20.0, "SSIM_I": 0.5, "PSNR_T_1": 21.0, "SSIM_T_1": 0.6}, LABELS)
    with open(path, "a") as f:
        f.write("4,16,0.0")  # a row cut short by a crash
    assert truncate_val_log(str(path), 3) == 1
    assert [row["epoch"] for row in read_val_rows(str(path))] == ["1", "2", "3"]
    assert truncate_val_log(str(path), 1) == 2
    assert [row["epoch"] for row in read_val_rows(str(path))] == ["1"]
    assert path.read_text().count("epoch,samples") == 1


def test_metrics_csv_writes_the_values_it_is_given_in_full_and_none_as_na(tmp_path):
    path = tmp_path / "metrics.csv"
    table = MetricsCSV(str(path), ["I", "T_3"])
    table.add("x", [20 + 1 / 3, 0.5, 21.0, float("inf")])
    table.add("y", [None] * 4)
    table.finish([20.25, 0.75, 21.5, 0.125])
    assert path.read_bytes() == (b"image,PSNR_I,SSIM_I,PSNR_T_3,SSIM_T_3\r\nx,20.333333333333332,0.5,21.0,inf\r\n"
                                 b"y,n/a,n/a,n/a,n/a\r\nmean,20.25,0.75,21.5,0.125\r\n")
    with pytest.raises(ValueError, match="3 values for the 4 columns"):
        table.add("z", [1.0, 2.0, 3.0])


def test_loss_log_old_and_new_lines_restarts_and_resumes(tmp_path):
    log = tmp_path / "loss_log.txt"
    log.write_text("================ Training Loss (Mon) ================\n"
                   "(epoch: 1, iters: 2, time: 0.1, data: 0.0) G: 1.000 D: 0.500\n"
                   "(epoch: 1, iters: 4, time: 0.1, data: 0.0) G: 0.900 D: 0.400\n"
                   "(epoch: 2, iters: 2, time: 0.1, data: 0.0) G: 0.800 D: nan\n")
    curve = read_loss_log(str(log))
    assert all(curve.guessed) and curve.xs == [2, 4, 6] and curve.names == ["G", "D"]
    assert curve.values("G") == [1.0, 0.9, 0.8] and math.isnan(curve.values("D")[2])
    with open(log, "a") as f:  # resumed after sample 4: the points from sample 6 on are replaced
        f.write("================ Training Loss (Tue) ================\n"
                "(epoch: 2, iters: 2, samples: 6, time: 0.1, data: 0.0) G: 0.700 D: 0.300\n"
                "(epoch: 2, iters: 4, samples: 8, time: 0.1, data: 0.0) G: 0.600 D: 0.200\n")
    curve = read_loss_log(str(log))
    assert curve.xs == [2, 4, 6, 8] and curve.values("G") == [1.0, 0.9, 0.7, 0.6]
    assert curve.guessed == [True, True, False, False]
    with open(log, "a") as f:  # a new run from scratch in the same folder: only it is drawn
        f.write("(epoch: 1, iters: 2, samples: 2, time: 0.1, data: 0.0) G: 5.000 D: 5.000\n")
    assert read_loss_log(str(log)).xs == [2]
    assert read_loss_log(str(tmp_path / "missing.txt")).xs == []


def test_val_log_rows_and_a_half_written_line(tmp_path):
    path = tmp_path / "val_log.csv"
    row = ["1", "12", "0.0002", "3.5", "3", "20", "0.7", "21", "0.75", "22", "0.8", "23", "0.85"]
    path.write_text(",".join(VAL_HEADER) + "\n" + ",".join(row) + "\n" + ",".join(row[:4]) + "\n")
    curve = read_val_log(str(path))
    assert curve.xs == [12.0] and curve.values("PSNR_T_3") == [23.0]
