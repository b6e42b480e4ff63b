"""data/image_folder.py: decoding odd image files (load_rgb) and the errors it reports; listing image folders."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import build_tiny_dataset, parse_options, skimage_photo, write_png
from PIL import Image

from data.image_folder import load_rgb, make_dataset
from util.errors import UserError


def rgb_array(path: Path) -> np.ndarray:
    """Return load_rgb(path) as an int array (H, W, 3), checking that it is 8-bit RGB."""
    img = load_rgb(str(path))
    assert img.mode == "RGB"
    array = np.asarray(img)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    return array.astype(int)


def write_png16_rgb(path: Path, array: np.ndarray) -> None:
    """Write a (H, W, 3) uint16 array as a 16-bit RGB PNG, chunk by chunk (Pillow cannot write one)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # depth 16, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_grayscale_l_is_expanded(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = rgb_array(tmp_path / "g.png")
    assert out.shape == (6, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_palette_image(tmp_path: Path) -> None:
    palette = [0, 0, 0, 200, 10, 20, 30, 180, 90] + [0] * (256 * 3 - 9)
    img = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), "P")
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    out = rgb_array(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [200, 10, 20], [30, 180, 90]])
    np.testing.assert_array_equal(out[1], [[30, 180, 90], [200, 10, 20], [0, 0, 0]])


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    palette = [0, 0, 0, 200, 10, 20] + [0] * (256 * 3 - 6)
    img = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    img.putpalette(palette)
    img.save(tmp_path / "pt.png", transparency=0)  # palette entry 0 (black) is fully transparent
    assert Image.open(tmp_path / "pt.png").info.get("transparency") == 0
    out = rgb_array(tmp_path / "pt.png")
    np.testing.assert_array_equal(out, [[[255, 255, 255], [200, 10, 20]], [[200, 10, 20], [255, 255, 255]]])


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = rgb_array(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent -> white, not its colour
    np.testing.assert_array_equal(out[0, 1], [10, 20, 30])  # opaque keeps its colour
    assert np.all(np.abs(out[0, 2] - 255 * 127 / 255) <= 1)  # half transparent black -> mid gray


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    la = np.array([[[50, 0], [50, 255], [50, 128]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    out = rgb_array(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [50, 50, 50])
    assert np.all(np.abs(out[0, 2] - (50 * 128 + 255 * 127) / 255) <= 1)


def test_16bit_grayscale_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    values = np.array([[65535, 32768, 0, 257 * 100]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really a 16-bit file
    out = rgb_array(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [255, 128, 0, 100])  # scaled, not clipped or truncated
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb_png(tmp_path: Path) -> None:
    values = np.zeros((3, 4, 3), dtype=np.uint16)
    values[..., 0] = 65535
    values[..., 1] = 32768
    values[..., 2] = 257 * 10 + 200
    values[1, 1] = (0, 65535, 257 * 200)
    path = tmp_path / "rgb16.png"
    write_png16_rgb(path, values)
    try:
        out = rgb_array(path)
    except UserError as err:  # acceptable only as a clear message naming the file
        assert str(path) in str(err)
        return
    assert out.shape == (3, 4, 3)
    # Pillow keeps the high byte (truncation); a rescale would round. Either is within 1 of value*255/65535.
    assert np.all(np.abs(out - values.astype(float) * 255 / 65535) <= 1)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    img = Image.new("CMYK", (24, 16), (0, 0, 0, 0))  # white
    img.paste((255, 0, 0, 0), (8, 0, 16, 16))  # cyan
    img.paste((0, 0, 0, 255), (16, 0, 24, 16))  # black
    img.save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = rgb_array(tmp_path / "c.jpg")
    assert out.shape == (16, 24, 3)
    for x, expected in ((3, (255, 255, 255)), (12, (0, 255, 255)), (20, (0, 0, 0))):
        assert np.all(np.abs(out[8, x] - expected) <= 6), (x, out[8, x])


@pytest.mark.parametrize("orientation, turns", [(6, -1), (8, 1)])  # 6: rotate 90 deg clockwise; 8: anticlockwise
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, turns: int) -> None:
    stored = np.zeros((24, 40, 3), dtype=np.uint8)
    stored[:] = (0, 0, 200)
    stored[:12, :20] = (220, 0, 0)  # top-left quadrant red
    stored[12:, 20:] = (0, 200, 0)  # bottom-right quadrant green
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = rgb_array(tmp_path / "o.jpg")
    assert out.shape == (40, 24, 3)  # width and height swapped
    expected = np.rot90(stored, turns).astype(int)
    assert np.abs(out - expected).mean() < 6  # JPEG noise only; an unrotated or mirrored image is far off
    assert np.abs(out - np.rot90(stored, -turns).astype(int)).mean() > 50


def test_truncated_jpeg_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        load_rgb(str(path))
    assert str(path) in str(info.value)


def test_text_file_named_png_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(UserError) as info:
        load_rgb(str(path))
    assert str(path) in str(info.value)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.png"
    with pytest.raises(UserError, match="absent.png"):
        load_rgb(str(path))


def test_make_dataset_lists_images_only(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "c.JPEG", "d.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    names = [Path(p).name for p in make_dataset(str(tmp_path))]
    assert names == ["a.jpg", "b.PNG", "c.JPEG", "d.webp"]
    assert len(make_dataset(str(tmp_path), 2)) == 2


def test_images_in_sub_folders_are_listed_sorted_and_counted(tmp_path, capsys):
    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    root = build_tiny_dataset(tmp_path / "d", n_train=2, n_test=0)
    photo = skimage_photo("astronaut", (40, 40))
    for rel in ("2008/b.png", "2008/a.jpg", "2007/deep/c.png"):
        write_png(photo, root / "trainA1" / rel)
    (root / "trainA1" / "2007" / "deep" / "loop").symlink_to(root / "trainA1", target_is_directory=True)
    paths = make_dataset(str(root / "trainA1"))
    rel = [os.path.relpath(p, root / "trainA1") for p in paths]
    assert rel == ["2007/deep/c.png", "2008/a.jpg", "2008/b.png", "t0.png", "t1.png"]  # the loop is read once
    ResizeNatural3Dataset(parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir",
                                                  tmp_path / "c", "--vgg_weights", "random", "--num_threads", "0",
                                                  "--load_size", "36", "--crop_size", "32", "--seed", "5"]))
    out = capsys.readouterr().out
    assert f"{root / 'trainA1'}: 5 image(s) in 3 folder(s): . 2, 2007/deep 1, 2008 2" in out
    assert f"{root / 'trainA2'}: 2 image(s)\n" in out


@pytest.mark.parametrize("keep_size", [False, True])
def test_test_image_smaller_than_4x4_is_a_user_error_naming_it(tmp_path: Path, keep_size: bool) -> None:
    from data.resize_natural_3_dataset import ResizeNatural3Dataset
    from options.test_options import TestOptions

    (tmp_path / "testB").mkdir()
    path = tmp_path / "testB" / "tiny.png"
    Image.new("RGB", (3, 8), (100, 100, 100)).save(path)
    args = ["--dataroot", str(tmp_path), "--gpu_ids", "-1", "--checkpoints_dir", str(tmp_path / "ck")]
    opt = TestOptions().parse(args + (["--keep_size"] if keep_size else []), save=False)
    dataset = ResizeNatural3Dataset(opt)
    with pytest.raises(UserError) as info:
        dataset[0]
    assert str(path) in str(info.value)
