"""test.py run as a user runs it: bad input as one-line errors, odd file names, sizes, tiles, the GPU-less machine,
read-only checkpoints. Every test here starts test.py (the slow tier)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from helpers import (
    assert_one_line_error,
    build_tiny_dataset,
    run_script,
    save_random_generators,
    skimage_photo,
    write_png,
)
from PIL import Image

pytestmark = pytest.mark.slow


def test_missing_dataroot(tmp_path):
    proc = run_script("test.py", "--dataroot", tmp_path / "nowhere", "--gpu_ids", "-1",
                      "--checkpoints_dir", tmp_path / "c")
    assert_one_line_error(proc, "nowhere", "not found")


def test_missing_testB(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    proc = run_script("test.py", "--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c")
    assert_one_line_error(proc, "testB", "must contain")


def test_undecodable_test_image_is_named_or_skipped(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=2)
    (root / "testB" / "broken.png").write_text("this is not a PNG")
    ckpt = tmp_path / "c"
    save_random_generators(ckpt / "exp")
    common = ["--dataroot", root, "--name", "exp", "--checkpoints_dir", ckpt, "--results_dir", tmp_path / "r",
              "--gpu_ids", "-1", "--epoch", "final"]
    assert_one_line_error(run_script("test.py", *common), "broken.png", "cannot be decoded")
    proc = run_script("test.py", *common, "--skip_bad_images")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.png" in proc.stderr
    images = os.listdir(tmp_path / "r" / "exp" / "test_final" / "images")
    assert any(n.startswith("img0_") for n in images) and not any(n.startswith("broken") for n in images)


def test_image_smaller_than_4x4_at_test(tmp_path):
    root = tmp_path / "d"
    write_png(skimage_photo("astronaut", (3, 8)), root / "testB" / "tiny.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert_one_line_error(proc, "tiny.png", "4x4")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])


def test_odd_file_names_are_escaped_and_linked(tmp_path):
    root = tmp_path / "d"
    # A file name cannot hold '/', so the closing tag of the example becomes '<script>' again.
    names = ["with space", "naïve_日本", 'x"><script>alert(1)<script>', "a&b <img src=x onerror=alert(1)>"]
    for name in names:
        photo = skimage_photo("astronaut", (32, 36))
        write_png(photo, root / "testB" / f"{name}.png")
        write_png(photo, root / "testA1" / f"{name}.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    web = tmp_path / "r" / "exp" / "test_final"
    page = (web / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "<script>" not in page
    assert len(parser.srcs) == 10 * len(names)
    for link in parser.srcs + [h for h in parser.hrefs if not h.startswith("#")]:  # "#image-k": in-page
        assert (web / unquote(link)).is_file(), link
    for name in names:
        assert (web / "images" / f"{name}_fake_Ts_03.png").is_file()
    assert len(re.findall(r"<tr>", page)) >= len(names) + 2  # metrics header, rows, mean


def test_max_size_downscales_large_test_inputs(tmp_path):
    root = tmp_path / "d"
    write_png(skimage_photo("astronaut", (90, 120)), root / "testB" / "big.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final", "--max_size", "60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image

    with Image.open(tmp_path / "r" / "exp" / "test_final" / "images" / "big_fake_Ts_03.png") as img:
        assert img.size == (60, 44)  # 120x90 -> 60x45 -> multiple of 4


def test_test_py_with_tiles_and_channels_last(tmp_path, tiny_dataset, golden_states, script_runner):
    folder = tmp_path / "checkpoints" / "tiles"
    folder.mkdir(parents=True)
    for net, state in zip(("G_T", "G_R"), golden_states):
        torch.save(state, folder / f"final_net_{net}.pth")
    proc = script_runner("test.py", "--dataroot", tiny_dataset, "--name", "tiles", "--model", "IBCLN",
                         "--checkpoints_dir", tmp_path / "checkpoints", "--results_dir", tmp_path / "results",
                         "--epoch", "final", "--gpu_ids", "-1", "--tile", "32", "--tile_overlap", "8",
                         "--channels_last", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = tmp_path / "results" / "tiles" / "test_final" / "images"
    for stem in ("img0", "img1"):
        with Image.open(images / f"{stem}_fake_Ts_03.png") as img:
            assert img.size == (64, 48)
            assert np.asarray(img).std() > 1


def run_test_py(root: Path, keep_size: bool) -> list[tuple[str, tuple[int, int]]]:
    """Run test.py on root with random final_net_G_T/G_R weights; return (file, size) of the saved images."""
    from models import IBCLNConfig, networks

    args = ["--dataroot", str(root), "--name", "run", "--model", "IBCLN", "--checkpoints_dir", str(root / "ck"),
            "--results_dir", str(root / "res"), "--gpu_ids", "-1", "--epoch", "final", "--ngf", "8"]
    if keep_size:
        args.append("--keep_size")
    (root / "ck" / "run").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for net in ("G_T", "G_R"):
        torch.save(networks.define_G(IBCLNConfig(ngf=8)).state_dict(), root / "ck" / "run" / f"final_net_{net}.pth")
    proc = run_script("test.py", *args, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    images = root / "res" / "run" / "test_final" / "images"
    return [(p.name, Image.open(p).size) for p in sorted(images.iterdir())]


@pytest.mark.parametrize("keep_size, size", [(True, (70, 66)), (False, (68, 64))])
def test_test_py_output_size(tmp_path: Path, keep_size: bool, size: tuple[int, int]) -> None:
    write_png(skimage_photo("chelsea", (66, 70)), tmp_path / "testB" / "p.png")
    saved = run_test_py(tmp_path, keep_size)
    assert len(saved) == 10  # fake_Ts 00..03, fake_Rs 00..03, real_T, real_I
    assert all(name.startswith("p_") for name, _ in saved)
    assert all(s == size for _, s in saved), saved


def test_testing_writes_nothing_into_the_checkpoint_folder(tmp_path):
    from models.networks import ConvLSTMGenerator

    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    ckpt = tmp_path / "c" / "shared"
    ckpt.mkdir(parents=True)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"final_net_{name}.pth")
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    proc = run_script("test.py", "--dataroot", root, "--name", "shared", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before
    assert "dataroot" in (tmp_path / "r" / "shared" / "test_final" / "test_opt.txt").read_text()
