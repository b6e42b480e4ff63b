"""Tests for scripts/make_demo_data.py: layout, photo split, determinism, reuse, and that the dataset reads it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT
from PIL import Image

SCRIPT = REPO_ROOT / "scripts" / "make_demo_data.py"
CROPS = 1  # crops per training photo: keeps each build to a few seconds


def _load_script():
    spec = importlib.util.spec_from_file_location("make_demo_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mdd = _load_script()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digest(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in _files(root).items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("demo") / "reflection_demo"
    assert mdd.make_demo_data(str(dest), seed=0, crops=CROPS) is True
    return dest


def test_layout_counts_and_sizes(built: Path) -> None:
    n_train = len(mdd.TRAIN_PHOTOS) * CROPS
    names = {folder: sorted(os.listdir(built / folder)) for folder in mdd.FOLDERS}
    assert len(names["trainA1"]) == n_train and len(names["trainA2"]) == n_train
    assert len(names["natural_T"]) == len(mdd.NATURAL_PAIRS) > 0
    assert names["natural_T"] == names["natural_I"]
    assert len(names["testB"]) == len(mdd.TEST_PAIRS) > 0
    assert names["testA1"] == names["testB"]
    assert sorted(os.listdir(built)) == sorted([*mdd.FOLDERS, mdd.MANIFEST])
    assert not Path(str(built) + ".partial").exists()
    for folder in ("trainA1", "trainA2"):
        for name in names[folder]:
            with Image.open(built / folder / name) as img:
                assert img.mode == "RGB" and img.format == "PNG"
                w, h = img.size
                assert w == h and mdd.CROP_MIN <= w <= mdd.CROP_MAX, (folder, name, img.size)
    for name in names["natural_T"]:
        with Image.open(built / "natural_T" / name) as t, Image.open(built / "natural_I" / name) as i:
            assert t.size == i.size == (mdd.NATURAL_SIZE, mdd.NATURAL_SIZE)
            assert t.mode == i.mode == "RGB"
    sizes = []
    for name in names["testB"]:
        with Image.open(built / "testA1" / name) as t, Image.open(built / "testB" / name) as i:
            assert t.size == i.size and t.mode == i.mode == "RGB"
            sizes.append((t.size[1], t.size[0]))
    assert sorted(sizes) == sorted((h, w) for _, _, h, w in mdd.TEST_PAIRS)
    # At least one test size is not a multiple of 4, to exercise test.py's resizing.
    assert any(h % 4 or w % 4 for h, w in sizes) and any(h % 4 == 0 and w % 4 == 0 for h, w in sizes)


def test_mixtures_differ_from_their_transmission(built: Path) -> None:
    for folder_t, folder_i in (("testA1", "testB"), ("natural_T", "natural_I")):
        for name in os.listdir(built / folder_t):
            t = np.asarray(Image.open(built / folder_t / name), dtype=np.float64)
            i = np.asarray(Image.open(built / folder_i / name), dtype=np.float64)
            assert np.abs(t - i).mean() > 2.0, (folder_i, name)  # a visible reflection, on 0..255
    manifest = json.loads((built / mdd.MANIFEST).read_text())
    for pair in manifest["test_pairs"]:
        assert 2.0 <= pair["sigma"] <= 5.0 and 0.8 < pair["alpha"] <= 1.0 and 1.08 <= pair["att"] < 1.18


def test_test_photos_are_never_used_for_training(built: Path) -> None:
    assert set(mdd.TRAIN_PHOTOS).isdisjoint(mdd.TEST_PHOTOS)
    manifest = json.loads((built / mdd.MANIFEST).read_text())
    assert manifest["train_photos"] == list(mdd.TRAIN_PHOTOS)
    assert manifest["test_photos"] == list(mdd.TEST_PHOTOS)
    sources = manifest["sources"]
    on_disk = {f"{folder}/{name}" for folder in mdd.FOLDERS for name in os.listdir(built / folder)}
    assert set(sources) == on_disk
    for rel, source in sources.items():
        folder, name = rel.split("/")
        photos = set(source.split("+"))
        allowed = set(mdd.TEST_PHOTOS) if folder.startswith("test") else set(mdd.TRAIN_PHOTOS)
        assert photos <= allowed, (rel, source)
        # The file name names its (transmission) photo, so the split can be checked without the manifest.
        stem = name[: -len(".png")]
        named = stem.rsplit("_", 1)[0] if folder.startswith("train") else stem.split("_", 1)[1]
        assert named in allowed and named == source.split("+")[0], rel


def test_same_seed_gives_identical_files_and_another_seed_differs(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    assert mdd.make_demo_data(str(again), seed=0, crops=CROPS) is True
    assert _digest(again) == _digest(built)
    assert mdd.make_demo_data(str(other), seed=5, crops=CROPS) is True
    first, second = _digest(built), _digest(other)
    assert first.keys() == second.keys()
    for folder in ("trainA1", "testB"):
        assert any(first[k] != second[k] for k in first if k.startswith(folder + "/")), folder


@pytest.mark.slow
def test_second_run_reuses_the_build_untouched(built: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    digest = _digest(built)
    result = subprocess.run([sys.executable, str(SCRIPT), str(built), "--seed", "0", "--crops", str(CROPS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "reusing" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before
    assert _digest(built) == digest


def test_refuses_other_options_and_foreign_folders(built: Path, tmp_path: Path) -> None:
    digest = _digest(built)
    with pytest.raises(SystemExit, match="seed"):
        mdd.make_demo_data(str(built), seed=1, crops=CROPS)
    assert _digest(built) == digest
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not a complete demo build"):
        mdd.make_demo_data(str(foreign), seed=0, crops=CROPS)
    assert sorted(os.listdir(foreign)) == ["mine.txt"]


def test_interrupted_build_is_redone(built: Path, tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    partial = Path(str(dest) + ".partial")
    (partial / "trainA1").mkdir(parents=True)
    (partial / "trainA1" / "stale.png").write_bytes(b"not a png")
    dest.mkdir()  # an empty folder is taken over
    assert mdd.make_demo_data(str(dest), seed=0, crops=CROPS) is True
    assert not partial.exists()
    assert _digest(dest) == _digest(built)


def test_project_dataset_reads_the_build(built: Path) -> None:
    from data.resize_natural_3_dataset import ResizeNatural3Dataset
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    common = ["--dataroot", str(built), "--gpu_ids", "-1", "--model", "IBCLN", "--dataset_mode", "resize_natural_3"]
    train_opt = TrainOptions().parse([*common, "--vgg_weights", "random", "--load_size", "40", "--crop_size", "32",
                                      "--dataset_size", "3"], save=False)
    train = ResizeNatural3Dataset(train_opt)
    assert len(train.t_paths) == len(train.r_paths) == len(mdd.TRAIN_PHOTOS) * CROPS
    assert len(train.natural_pairs) == len(mdd.NATURAL_PAIRS)
    sample = train[0]
    assert tuple(sample["I"].shape) == (3, 32, 32)
    test_opt = TestOptions().parse(common, save=False)
    test = ResizeNatural3Dataset(test_opt)
    assert len(test) == len(mdd.TEST_PAIRS)
    for k in range(len(test)):
        item = test[k]
        assert bool(item["has_gt"])
        h, w = item["I"].shape[-2:]
        assert h % 4 == 0 and w % 4 == 0
