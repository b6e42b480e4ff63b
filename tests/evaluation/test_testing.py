"""Testing a checkpoint (evaluation/testing.py): what a run interrupted part way keeps."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import build_tiny_dataset

from data.resize_natural_3_dataset import ResizeNatural3Dataset
from evaluation import testing
from models.networks import ConvLSTMGenerator


def test_interrupted_test_run_keeps_the_rows_of_the_images_done(tmp_path, make_options):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=3)
    ckpt = tmp_path / "checkpoints" / "exp"
    ckpt.mkdir(parents=True)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"final_net_{name}.pth")
    opt = make_options("test", "--dataroot", root, "--name", "exp", "--epoch", "final")
    class Interrupted(ResizeNatural3Dataset):
        def __getitem__(self, index):
            if index == 1:
                raise KeyboardInterrupt
            return super().__getitem__(index)

    model = testing.load_test_model(opt)
    web = tmp_path / "web"
    with pytest.raises(SystemExit) as stop:
        testing.test_model(opt, model, Interrupted(opt), str(web), progress=False)
    assert stop.value.code == 130
    with open(web / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["img0"]
    assert "img0" in (web / "index.html").read_text(encoding="utf-8")
