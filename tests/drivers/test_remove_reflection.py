"""remove_reflection.py: the same pixels as test.py --keep_size, inputs of every kind, bad inputs, names, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import skimage_photo, write_png
from PIL import Image

import remove_reflection  # noqa: TID251 (its own tests)
from util.errors import UserError
from util.machine import cpu_has_native_bf16


def run(capsys, *args: object) -> tuple[int, str, str]:
    """Run the command in this process; return (exit status, stdout, stderr)."""
    status = remove_reflection.main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """testB with two photos whose sides are not multiples of 4."""
    root = tmp_path / "data"
    write_png(skimage_photo("astronaut", (50, 70)), root / "testB" / "a.png")
    write_png(skimage_photo("coffee", (61, 45)), root / "testB" / "b.png")
    return root


@pytest.mark.slow  # runs test.py
@pytest.mark.parametrize(("ours", "theirs"), [
    ((), ()),
    (("--steps", "1"), ()),
    (("--tile", "32"), ("--tile", "32", "--tile_overlap", "16")),
    (("--amp",), ("--amp",)),
])
def test_pixels_equal_test_py_keep_size(photos, seeded_weights, tmp_path, capsys, script_runner, ours, theirs):
    if "--amp" in ours and not cpu_has_native_bf16():
        pytest.skip("--amp on the CPU needs bfloat16 instructions (AVX512-BF16 or AMX), which this CPU lacks")
    results = tmp_path / "results"
    proc = script_runner("test.py", "--dataroot", photos, "--name", seeded_weights.name, "--checkpoints_dir",
                         seeded_weights.parent, "--results_dir", results, "--epoch", "final", "--gpu_ids", "-1",
                         "--ngf", "8", "--keep_size", *theirs, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, photos / "testB", "--weights", seeded_weights, "--out", out, "--device", "cpu",
                            "--save_reflection", *ours)
    assert status == 0 and "done: 2 written, 0 skipped" in stdout
    step = ours[1] if ours[:1] == ("--steps",) else "3"
    images = results / seeded_weights.name / "test_final" / "images"
    for name, size in (("a", (50, 70)), ("b", (61, 45))):
        t, r = png(out / f"{name}_T.png"), png(out / f"{name}_R.png")
        assert t.shape[:2] == r.shape[:2] == size
        assert np.array_equal(t, png(images / f"{name}_fake_Ts_0{step}.png"))
        assert np.array_equal(r, png(images / f"{name}_fake_Rs_0{step}.png"))
        assert not np.array_equal(t, png(photos / "testB" / f"{name}.png"))


def test_any_mode_the_dataset_reads_and_original_sizes(tmp_path, seeded_weights, capsys):
    base = skimage_photo("astronaut", (30, 41))
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 128, np.uint8)]), "RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: upright, the image is 30 wide and 41 high
    Image.fromarray(base).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(base).save(folder / "plain.tiff")
    status, stdout, err = run(capsys, folder, "--weights", seeded_weights, "--out", tmp_path / "out")
    assert status == 0 and err.count("skipped") == 0
    assert re.search(r"done: 5 written, 0 skipped, in \d+\.\d s \([\d.e+-]+ images/s\)", stdout)
    assert "5/5" in err and "images/s" in err  # the progress bar
    for name in ("gray16", "palette", "alpha", "plain"):
        assert png(tmp_path / "out" / f"{name}_T.png").shape == (30, 41, 3)
    assert png(tmp_path / "out" / "rotated_T.png").shape == (41, 30, 3)
    assert not (tmp_path / "out" / "plain_R.png").exists()  # R only with --save_reflection


def test_bad_and_missing_inputs_are_skipped_with_one_line_each_and_exit_1(tmp_path, seeded_weights, capsys):
    good = write_png(skimage_photo("coffee", (24, 28)), tmp_path / "good.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny = write_png(np.zeros((3, 9, 3), np.uint8), tmp_path / "tiny.png")
    status, stdout, err = run(capsys, good, broken, tmp_path / "missing.png", empty, tiny, "--weights",
                              seeded_weights, "--out", tmp_path / "out")
    assert status == 1 and "done: 1 written, 4 skipped" in stdout
    lines = [line for line in err.splitlines() if line.startswith("skipped: ")]
    assert len(lines) == 4
    assert any(str(broken) in line and "cannot be decoded" in line for line in lines)
    assert any("missing.png: no such file" in line for line in lines)
    assert any(str(empty) in line and "no images found" in line for line in lines)
    assert any("9x3 pixels is smaller than the 4x4" in line for line in lines)
    assert "Traceback" not in err and (tmp_path / "out" / "good_T.png").is_file()


@pytest.mark.slow  # the exit path of remove_reflection.py itself
def test_missing_weights_name_both_files(tmp_path, capsys, script_runner):
    image = write_png(skimage_photo("coffee", (24, 28)), tmp_path / "x.png")
    proc = script_runner("remove_reflection.py", image, "--weights", tmp_path / "nothing", "--out", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no IBCLN weights")
    assert "final_net_G_T.pth" in proc.stderr and "final_net_G_R.pth" in proc.stderr
    assert "scripts/get_weights.py" in proc.stderr


def test_folders_are_mirrored_names_kept_apart_and_inputs_never_overwritten(tmp_path, seeded_weights, capsys):
    photo = skimage_photo("coffee", (24, 28))
    root = tmp_path / "in"
    write_png(photo, root / "x.png")
    write_png(photo, root / "sub" / "x.png")
    Image.fromarray(photo).save(root / "x.jpg")
    write_png(photo, root / "out" / "old_T.png")  # results of an earlier run under --out are not inputs
    status, stdout, _ = run(capsys, root, "--weights", seeded_weights, "--out", root / "out")
    assert status == 0 and "done: 3 written" in stdout
    written = sorted(p.relative_to(root / "out").as_posix() for p in (root / "out").rglob("*.png"))
    assert written == ["old_T.png", "sub/x_T.png", "x_jpg_T.png", "x_png_T.png"]
    # An output that would replace an input is refused, and the input stays as it was.
    victim = write_png(photo, tmp_path / "y_T.png")
    before = victim.read_bytes()
    status, _, err = run(capsys, write_png(photo, tmp_path / "y.png"), victim, "--weights", seeded_weights,
                         "--out", tmp_path)
    assert status == 1 and "is one of the inputs" in err and victim.read_bytes() == before


def test_tiles_are_announced_per_image(tmp_path, seeded_weights, capsys):
    image = write_png(skimage_photo("coffee", (40, 52)), tmp_path / "x.png")
    status, stdout, _ = run(capsys, image, "--weights", seeded_weights, "--out", tmp_path / "out", "--tile", "32")
    assert status == 0 and f"{image}: 52x40: tiles of 32 px" in stdout
    status, stdout, _ = run(capsys, image, "--weights", seeded_weights, "--out", tmp_path / "out2")
    assert status == 0 and "tiles of" not in stdout  # --tile auto: this image fits whole


@pytest.mark.parametrize(("flag", "message"), [(("--tile", "big"), "--tile big"), (("--steps", "4"), "--steps"),
                                               (("--tile", "30"), "--tile 30"), (("--device", "tpu"), "--device tpu")])
def test_bad_options_are_one_line_errors(tmp_path, seeded_weights, capsys, flag, message):
    # argparse's own errors exit with status 2; the others are UserErrors, printed as one line by __main__.
    image = write_png(skimage_photo("coffee", (24, 28)), tmp_path / "x.png")
    try:
        remove_reflection.main([str(image), "--weights", str(seeded_weights), "--out", str(tmp_path / "o"), *flag])
    except SystemExit as exit_:
        assert exit_.code == 2 and message in capsys.readouterr().err
    except UserError as err:
        assert message in str(err) and "\n" not in str(err)
    else:
        pytest.fail(f"{flag} was accepted")
