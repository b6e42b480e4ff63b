"""scripts/make_synthetic_set.py: synthetic test sets and training layouts from a folder of photos."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, skimage_photo, write_png
from PIL import Image

from data import synthesis
from data.image_folder import load_rgb
from util.images import to_tensor

SCRIPT = REPO_ROOT / "scripts" / "make_synthetic_set.py"


def load_script():
    """Return the script as a module."""
    spec = importlib.util.spec_from_file_location("make_synthetic_set", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


mss = load_script()


def make_photos(folder: Path) -> Path:
    """Write photos of several sizes, formats and modes (one in a subfolder) and one undecodable file."""
    write_png(skimage_photo("astronaut", (60, 50)), folder / "astronaut.png")
    Image.fromarray(skimage_photo("coffee", (40, 70))).save(folder / "coffee.jpg", quality=90)
    Image.fromarray(skimage_photo("camera")[::8, ::8, 0]).save(folder / "grey.png")  # mode L
    rgba = np.dstack([skimage_photo("chelsea", (50, 50)), np.full((50, 50), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    wide = (skimage_photo("rocket", (48, 64))[..., 0].astype(np.uint16) * 257)
    Image.fromarray(wide).save(folder / "sixteen.png")  # 16-bit grey
    write_png(skimage_photo("immunohistochemistry", (56, 56)), folder / "sub" / "cells.png")
    (folder / "broken.png").write_bytes(b"no image here")
    return folder


def build(*args: str) -> dict:
    """Run the script's build() on a command line; return the manifest."""
    return mss.build(mss.parse_args(list(args)))


def files(folder: Path) -> dict[str, bytes]:
    """Return relative path -> bytes of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_test_set_is_deterministic_and_mixes_the_recorded_reflection(tmp_path):
    photos = make_photos(tmp_path / "photos")
    before = files(photos)
    manifest = build("--photos", str(photos), "--out", str(tmp_path / "a"), "--n", "5", "--seed", "4", "--size", "32")
    build("--photos", str(photos), "--out", str(tmp_path / "b"), "--n", "5", "--seed", "4", "--size", "32")
    build("--photos", str(photos), "--out", str(tmp_path / "c"), "--n", "5", "--seed", "5", "--size", "32")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    assert files(photos) == before  # nothing written into the photo folder
    assert len(manifest["images"]) == 5 and len({r["T"] for r in manifest["images"]}) == 5
    assert all(r["T"] != r["R"] for r in manifest["images"])
    for record in manifest["images"]:
        name = record["name"]
        for sub in ("testB", "testA1", "testA2"):
            assert Image.open(tmp_path / "a" / sub / name).size == (32, 32)
        # the saved mixture is the synthesis of the recorded photos with the recorded parameters
        t = to_tensor(mss.square(load_rgb(record["T"]), 32))
        r = to_tensor(mss.square(load_rgb(record["R"]), 32))
        r_out, i = synthesis.synthesize(t, r, record["sigma"], record["att"], record["alpha"], tuple(record["offset"]))
        assert np.array_equal(np.asarray(mss.to_uint8(i)), np.asarray(Image.open(tmp_path / "a" / "testB" / name)))
        assert np.array_equal(np.asarray(mss.to_uint8(r_out)), np.asarray(Image.open(tmp_path / "a" / "testA2" / name)))
        assert np.array_equal(np.asarray(mss.to_uint8(t)), np.asarray(Image.open(tmp_path / "a" / "testA1" / name)))
        assert not torch.equal(i, t)


def test_train_layout_holds_out_validation_photos_and_copies_real_pairs(tmp_path):
    photos = make_photos(tmp_path / "photos")
    pairs = tmp_path / "pairs"
    for k, name in enumerate(("coffee", "chelsea")):
        t = skimage_photo(name, (40, 48))
        write_png(t, pairs / "transmission_layer" / f"p{k}.jpg.png")
        write_png((0.7 * t + 40).astype(np.uint8), pairs / "blended" / f"p{k}.jpg.png")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="broken.png: cannot be decoded"):
        manifest = build("--train", "--photos", str(photos), "--out", str(out), "--n", "2", "--seed", "1",
                         "--size", "32", "--real_pairs", str(pairs))
    held_out = set(manifest["val"]["held_out"])
    assert len(manifest["val"]["images"]) == 2 and len(list((out / "val" / "testB").iterdir())) == 2
    assert {r["T"] for r in manifest["val"]["images"]} | {r["R"] for r in manifest["val"]["images"]} <= held_out
    assert not held_out & set(manifest["trainA1"]) and not held_out & set(manifest["trainA2"])
    decodable = {str(p) for p in photos.rglob("*.*") if p.name != "broken.png"}
    assert set(manifest["trainA1"]) | held_out == decodable | (held_out & {str(photos / "broken.png")})
    assert sorted(p.name for p in (out / "trainA1").iterdir()) == sorted(
        str(Path(p).relative_to(photos)).replace("/", "__") for p in manifest["trainA1"])
    for source in manifest["trainA1"]:  # byte copies, the subfolder flattened into the name
        name = str(Path(source).relative_to(photos)).replace("/", "__")
        assert (out / "trainA1" / name).read_bytes() == Path(source).read_bytes()
    assert sorted(p.name for p in (out / "natural_I").iterdir()) == ["p0.jpg.png", "p1.jpg.png"]
    assert sorted(p.name for p in (out / "natural_T").iterdir()) == ["p0.jpg.png", "p1.jpg.png"]
    assert any("broken.png" in s for s in manifest["skipped"])
    assert json.loads((out / "manifest.json").read_text()) == manifest


@pytest.mark.slow
@pytest.mark.parametrize("case", ["inside", "not_empty"])
def test_output_folder_errors_are_one_line(tmp_path, case):
    photos = make_photos(tmp_path / "photos")
    out = photos / "generated" if case == "inside" else tmp_path / "full"
    if case == "not_empty":
        write_png(skimage_photo("coffee", (8, 8)), out / "x.png")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--photos", str(photos), "--out", str(out), "--n", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out")
    assert ("inside the input folder" if case == "inside" else "not empty") in lines[0]
    assert not (photos / "generated").exists()
