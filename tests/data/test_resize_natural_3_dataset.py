"""The resize_natural_3 dataset (docs/method.md §6): samples, real pairs, seeding, test-time sizing, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    build_tiny_dataset,
    make_openrr_tree,
    make_rrw_session,
    make_rrw_tree,
    parse_options,
    skimage_photo,
    write_png,
)
from PIL import Image

from data import create_dataset
from data.image_folder import load_rgb
from data.layouts import find_pairs
from data.resize_natural_3_dataset import ResizeNatural3Dataset
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.errors import UserError

TRAIN_KEYS = {"T", "I", "R", "T2", "T4", "alpha", "isNatural", "I_path", "T_path", "bad_files"}


def make_train_root(root: Path, size: tuple[int, int] = (48, 40), natural: dict | None = None) -> Path:
    """Write trainA1 (3 photos of size (W, H)), trainA2 (2 photos) and optional natural_T/natural_I {name: (T, I)}
    under root."""
    for i, name in enumerate(("astronaut", "chelsea", "rocket")):
        write_png(skimage_photo(name, (size[1], size[0])), root / "trainA1" / f"t{i}.png")
    for i, name in enumerate(("coffee", "astronaut")):
        write_png(skimage_photo(name, (size[1] + 4, size[0] + 6)), root / "trainA2" / f"r{i}.jpg")
    for name, (t, i) in (natural or {}).items():
        write_png(t, root / "natural_T" / name)
        write_png(i, root / "natural_I" / name)
    return root


def train_opt(root: Path, *extra: str, seed: int = 1):
    """Return parsed training options for root (CPU, small crops, no workers unless extra says so)."""
    args = ["--dataroot", str(root), "--gpu_ids", "-1", "--checkpoints_dir", str(root / "ck"),
            "--load_size", "40", "--crop_size", "32", "--num_threads", "0", "--seed", str(seed), *extra]
    return TrainOptions().parse(args, save=False)


def eval_opt(root: Path, *extra: str):
    """Return parsed test options for root."""
    args = ["--dataroot", str(root), "--gpu_ids", "-1", "--checkpoints_dir", str(root / "ck"), *extra]
    return TestOptions().parse(args, save=False)


def check_train_sample(sample: dict, crop: int) -> None:
    """Assert the keys, shapes, dtypes and value ranges of one training sample."""
    assert set(sample) == TRAIN_KEYS
    for key in ("T", "I", "R"):
        assert sample[key].shape == (3, crop, crop) and sample[key].dtype == torch.float32, key
        assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0, key
    assert sample["T2"].shape == (3, crop // 2, crop // 2)
    assert sample["T4"].shape == (3, crop // 4, crop // 4)
    for key in ("T2", "T4"):
        assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0, key
    # T2 and T4 are T at 1/2 and 1/4 scale (antialiased), not some other image or window: close to box averages.
    for key, factor in (("T2", 2), ("T4", 4)):
        pooled = torch.nn.functional.avg_pool2d(sample["T"][None], factor)[0]
        assert float((sample[key] - pooled).abs().mean()) < 0.06, key
    assert sample["alpha"].shape == () and sample["isNatural"].dtype == torch.bool
    assert os.path.isfile(sample["I_path"]) and os.path.isfile(sample["T_path"])


def find_window(image: np.ndarray, window: np.ndarray) -> list[tuple[int, int]]:
    """Return every (y, x) where window occurs exactly in image."""
    h, w = window.shape[:2]
    hits = []
    for y in range(image.shape[0] - h + 1):
        for x in range(image.shape[1] - w + 1):
            if image[y, x, 0] == window[0, 0, 0] and np.array_equal(image[y:y + h, x:x + w], window):
                hits.append((y, x))
    return hits


def as_uint8(t: torch.Tensor) -> np.ndarray:
    """Return a (3, H, W) tensor in [0,1] as a uint8 (H, W, 3) array."""
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# ----- training samples ------------------------------------------------------------------------------


def test_synthetic_samples_without_natural_pairs(tmp_path: Path, capsys) -> None:
    root = make_train_root(tmp_path)
    opt = train_opt(root, "--dataset_size", "12")
    capsys.readouterr()
    dataset = ResizeNatural3Dataset(opt)
    notes = [line for line in capsys.readouterr().out.splitlines() if "natural_T" in line]
    assert len(notes) == 1 and notes[0].startswith("note:")
    assert len(dataset) == 12
    for index in range(12):
        sample = dataset[index]
        check_train_sample(sample, 32)
        assert not bool(sample["isNatural"])
        assert 0.8 < float(sample["alpha"]) <= 1.0
        assert sample["T_path"] == str(root / "trainA1" / f"t{index % 3}.png")  # trainA1[index % len]
        assert not torch.equal(sample["I"], sample["T"])  # a reflection was added
        assert float(sample["R"].max()) > 0


def test_natural_prob_one_gives_only_real_pairs(tmp_path: Path, capsys) -> None:
    t = skimage_photo("chelsea", (46, 60))
    root = make_train_root(tmp_path, natural={"x.png": (t, 255 - t)})
    opt = train_opt(root, "--natural_prob", "1.0", "--dataset_size", "10")
    capsys.readouterr()
    dataset = ResizeNatural3Dataset(opt)
    assert "note:" not in capsys.readouterr().out
    for index in range(10):
        sample = dataset[index]
        check_train_sample(sample, 32)
        assert bool(sample["isNatural"]) and float(sample["alpha"]) == 1.0
        assert sample["T_path"] == str(root / "natural_T" / "x.png")
        assert sample["I_path"] == str(root / "natural_I" / "x.png")


def test_natural_prob_fraction(tmp_path: Path) -> None:
    t = skimage_photo("chelsea", (40, 44))
    root = make_train_root(tmp_path, size=(36, 36), natural={"x.png": (t, t // 2)})
    opt = train_opt(root, "--natural_prob", "0.3", "--dataset_size", "200", "--load_size", "20", "--crop_size", "16")
    dataset = ResizeNatural3Dataset(opt)
    flags = [bool(dataset[i]["isNatural"]) for i in range(200)]
    assert 35 <= sum(flags) <= 85  # 60 expected; sd 6.5


def test_unpaired_natural_names_are_listed(tmp_path: Path) -> None:
    t = skimage_photo("chelsea", (40, 40))
    root = make_train_root(tmp_path, natural={"a.png": (t, t)})
    write_png(t, root / "natural_T" / "only_t.png")
    write_png(t, root / "natural_I" / "only_i.jpg")
    with pytest.raises(UserError) as info:
        ResizeNatural3Dataset(train_opt(root))
    assert "only_t.png" in str(info.value) and "only_i.jpg" in str(info.value)
    assert "a.png" not in str(info.value)


def test_natural_pairs_pair_by_stem_within_their_sub_folder(tmp_path: Path) -> None:
    """The rule of the test pairs: the name without extension (x.png with x.jpg), here with its sub-folder."""
    t = skimage_photo("chelsea", (40, 40))
    root = make_train_root(tmp_path, natural={"a.png": (t, t)})
    write_png(t, root / "natural_T" / "scene1" / "x.png")
    write_png(t, root / "natural_I" / "scene1" / "x.jpg")
    write_png(t, root / "natural_T" / "scene2" / "x.png")
    write_png(t, root / "natural_I" / "scene2" / "x.png")
    pairs = ResizeNatural3Dataset(train_opt(root)).natural_pairs
    assert [(os.path.relpath(tp, root), os.path.relpath(ip, root)) for tp, ip in pairs] == [
        ("natural_T/a.png", "natural_I/a.png"), ("natural_T/scene1/x.png", "natural_I/scene1/x.jpg"),
        ("natural_T/scene2/x.png", "natural_I/scene2/x.png")]
    write_png(t, root / "natural_I" / "scene1" / "x.png")  # now x.jpg and x.png in one folder: ambiguous
    with pytest.raises(UserError, match=r"x.jpg and x.png share the name 'scene1/x'"):
        ResizeNatural3Dataset(train_opt(root))


def test_epoch_length(tmp_path: Path) -> None:
    root = make_train_root(tmp_path)
    assert len(ResizeNatural3Dataset(train_opt(root, "--dataset_size", "7"))) == 7
    assert len(ResizeNatural3Dataset(train_opt(root, "--dataset_size", "0"))) == 3  # len(trainA1)


@pytest.mark.parametrize("folder, how", [("trainA1", "missing"), ("trainA1", "empty"), ("trainA2", "missing"),
                                         ("trainA2", "empty"), ("testB", "missing"), ("testB", "empty")])
def test_missing_or_empty_folder_is_named(tmp_path: Path, folder: str, how: str) -> None:
    if folder == "testB":
        opt = eval_opt(tmp_path)
    else:
        opt = train_opt(make_train_root(tmp_path))
    path = tmp_path / folder
    path.mkdir(exist_ok=True)
    for f in path.iterdir():
        f.unlink()
    if how == "missing":
        path.rmdir()
    else:
        (path / "readme.txt").write_text("not an image")
    with pytest.raises(UserError) as info:
        ResizeNatural3Dataset(opt)
    assert str(path) in str(info.value)


def tiny_train_opt(root: Path, tmp_path: Path, *args: str):
    """Return training options for a build_tiny_dataset root (CPU, random VGG, no workers, 32x32 crops)."""
    return parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c",
                                   "--vgg_weights", "random", "--num_threads", "0", "--load_size", "36",
                                   "--crop_size", "32", "--seed", "5", *args])


def test_unused_photos_are_noted_and_uniform_sampling_reaches_them(tmp_path, capsys):
    root = build_tiny_dataset(tmp_path / "d", n_train=6, n_test=0)
    dataset = ResizeNatural3Dataset(tiny_train_opt(root, tmp_path, "--dataset_size", "2"))
    assert "the last 4 are never used; --t_sampling uniform" in capsys.readouterr().out
    assert {os.path.basename(dataset[i % 2]["T_path"]) for i in range(8)} == {"t0.png", "t1.png"}

    def names(seed: int) -> list[str]:
        dataset = ResizeNatural3Dataset(tiny_train_opt(root, tmp_path, "--dataset_size", "2", "--t_sampling",
                                                       "uniform"))
        torch.manual_seed(seed)
        return [os.path.basename(dataset[i % 2]["T_path"]) for i in range(24)]

    first = names(11)
    assert "never used" not in capsys.readouterr().out
    assert set(first) == {f"t{k}.png" for k in range(6)}
    assert names(11) == first and names(12) != first  # reproducible under the seed


@pytest.mark.parametrize("preprocess", ["crop", "scale_width_and_crop", "resize_and_crop"])
def test_training_photos_smaller_than_the_crop_are_upscaled(tmp_path, preprocess):
    """The documented choice: a photo smaller than --crop_size is enlarged (aspect kept) so the crop fits."""
    root = build_tiny_dataset(tmp_path / "d", n_train=2, n_reflection=2, n_test=0, train_size=(20, 30))
    opt = parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c",
                                  "--preprocess", preprocess, "--load_size", "24", "--crop_size", "48",
                                  "--num_threads", "0", "--seed", "1", "--vgg_weights", "random"])
    sample = ResizeNatural3Dataset(opt)[0]
    assert sample["T"].shape == (3, 48, 48) and sample["I"].shape == (3, 48, 48)
    assert sample["T2"].shape == (3, 24, 24)


# ----- real pairs: the same window in T and I ---------------------------------------------------------


def natural_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Return a root with two real pairs, I = 255 - T and I = T // 2, on non-square 70x50 photos."""
    t_neg, t_half = skimage_photo("chelsea", (50, 70)), skimage_photo("astronaut", (50, 70))
    root = make_train_root(tmp_path, natural={"neg.png": (t_neg, 255 - t_neg), "half.png": (t_half, t_half // 2)})
    return root, {"neg.png": t_neg, "half.png": t_half}


def transform(name: str, t: np.ndarray) -> np.ndarray:
    """Return the known I of a real pair for T (uint8)."""
    return 255 - t if name == "neg.png" else t // 2


@pytest.mark.parametrize("flip", [False, True])
def test_real_pair_same_window_without_resampling(tmp_path: Path, flip: bool) -> None:
    root, originals = natural_root(tmp_path)
    side = int(0.7 * 50) // 4 * 4  # 35 rounded down to a multiple of 4
    flags = ["--preprocess", "none", "--natural_prob", "1.0"] + ([] if flip else ["--no_flip"])
    flipped, windows = [], set()
    for seed in range(12):
        sample = ResizeNatural3Dataset(train_opt(root, *flags, seed=seed))[0]
        name = os.path.basename(sample["T_path"])
        assert os.path.basename(sample["I_path"]) == name
        assert sample["T"].shape == (3, side, side) and sample["I"].shape == (3, side, side)
        t, i = as_uint8(sample["T"]), as_uint8(sample["I"])
        np.testing.assert_array_equal(i, transform(name, t))  # exact: same window, same flip, no resampling
        hits = find_window(originals[name], t)
        mirrored = find_window(originals[name], t[:, ::-1])
        assert hits or mirrored, "T is not a window of the real photo"
        flipped.append(not hits)
        windows.add((name, *(hits or mirrored)[0]))
    assert len(windows) > 3  # the window moves
    if flip:
        assert any(flipped) and not all(flipped)
    else:
        assert not any(flipped)


def test_real_pair_same_window_with_resize_and_crop(tmp_path: Path) -> None:
    root, _ = natural_root(tmp_path)
    dataset = ResizeNatural3Dataset(train_opt(root, "--natural_prob", "1.0", "--dataset_size", "16"))
    for index in range(16):
        sample = dataset[index]
        check_train_sample(sample, 32)
        t, i = sample["T"].double() * 255, sample["I"].double() * 255
        if sample["T_path"].endswith("neg.png"):
            assert float((i - (255 - t)).abs().max()) <= 2.01  # PIL's fixed-point bicubic rounds asymmetrically
        else:  # where bicubic overshoot clipped T to 0 or 255, T // 2 (not clipped) differs: compare elsewhere
            inside = (t > 0) & (t < 255)
            assert float(inside.double().mean()) > 0.5
            assert float((i - t / 2)[inside].abs().max()) <= 2.01


def test_real_pair_of_different_sizes_is_a_user_error(tmp_path: Path) -> None:
    t = skimage_photo("chelsea", (40, 40))
    root = make_train_root(tmp_path, natural={"x.png": (t, skimage_photo("chelsea", (40, 44)))})
    dataset = ResizeNatural3Dataset(train_opt(root, "--natural_prob", "1.0"))
    with pytest.raises(UserError, match="x.png"):
        dataset[0]


def test_real_pair_smaller_than_4_pixels_is_a_user_error(tmp_path: Path) -> None:
    t = skimage_photo("chelsea", (3, 12))
    root = make_train_root(tmp_path, natural={"thin.png": (t, t)})
    dataset = ResizeNatural3Dataset(train_opt(root, "--natural_prob", "1.0"))
    with pytest.raises(UserError, match="thin.png"):
        dataset[0]


# ----- real pairs from the newer real data sets (--real_pairs) -------------------------------------------


def real_pair_trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Return (a training root with one natural pair, an OpenRR-1k-shaped tree, an RRW-shaped tree)."""
    t = skimage_photo("chelsea", (40, 40))
    root = make_train_root(tmp_path / "data", natural={"x.png": (t, 255 - t)})
    return root, make_openrr_tree(tmp_path / "OpenRR-1k", size=(40, 48)), make_rrw_tree(tmp_path / "RRW")


def test_real_pairs_from_an_openrr1k_and_an_rrw_tree_are_drawn_as_real_pairs(tmp_path: Path, capsys) -> None:
    root, openrr, rrw = real_pair_trees(tmp_path)
    natural = (str(root / "natural_T" / "x.png"), str(root / "natural_I" / "x.png"))
    from_openrr = {(p.gt, p.input) for p in find_pairs(str(openrr), training=True)[1]}
    from_rrw = {(p.gt, p.input) for p in find_pairs(str(rrw))[1] if p.gt}
    assert len(from_openrr) == 3 and len(from_rrw) == 5
    assert all("train_800" in t for t, _ in from_openrr)  # the train split only
    capsys.readouterr()
    opt = train_opt(root, "--real_pairs", f"{openrr},{rrw}", "--natural_prob", "1.0", "--preprocess", "none",
                    "--no_flip", "--dataset_size", "60")
    dataset = ResizeNatural3Dataset(opt)
    out = capsys.readouterr().out
    assert "3 real pair(s) (openrr1k layout)" in out
    assert "5 real pair(s) (rrw layout); 1 input(s) without a ground truth left out" in out
    assert dataset.natural_pairs[0] == natural and set(dataset.natural_pairs) == {natural, *from_openrr, *from_rrw}
    torch.manual_seed(0)
    drawn = set()
    for index in range(60):
        sample = dataset[index]
        assert bool(sample["isNatural"]) and float(sample["alpha"]) == 1.0
        pair = (sample["T_path"], sample["I_path"])
        assert pair in dataset.natural_pairs
        drawn.add(pair)
        t, i = as_uint8(sample["T"]), as_uint8(sample["I"])
        t_hits = find_window(np.asarray(load_rgb(pair[0])), t)
        assert t_hits and t_hits == find_window(np.asarray(load_rgb(pair[1])), i)  # one window in both
    assert drawn & from_openrr and drawn & from_rrw


def test_real_pairs_instead_of_natural_and_their_errors(tmp_path: Path) -> None:
    root, openrr, rrw = real_pair_trees(tmp_path)
    dataset = ResizeNatural3Dataset(train_opt(root, "--real_pairs", str(openrr / "val_100"), "--no_natural"))
    assert [os.path.basename(i) for _, i in dataset.natural_pairs] == ["val_0001.jpg", "val_0002.jpg"]
    assert ResizeNatural3Dataset(train_opt(root, "--no_natural")).natural_pairs == []
    with pytest.raises(UserError, match="--real_pairs .*nowhere: folder not found"):
        ResizeNatural3Dataset(train_opt(root, "--real_pairs", str(tmp_path / "nowhere")))
    lonely = make_rrw_session(tmp_path / "lonely", "GT_x", {"nogt_a": 1, "b": 1})
    shutil.rmtree(lonely / "b")  # its ground truth stays: the frames of nogt_a are all there is
    with pytest.raises(UserError, match=r"--real_pairs .*lonely: no input has a ground truth \(rrw layout\)"):
        ResizeNatural3Dataset(train_opt(root, "--real_pairs", str(lonely)))
    with pytest.raises(UserError, match="no known test-set layout"):
        ResizeNatural3Dataset(train_opt(root, "--real_pairs", str(root / "trainA1")))


# ----- reproducibility -----------------------------------------------------------------------------------


def sample_stream(root: Path, seed: int, workers: int) -> list[tuple]:
    """Return the batches of one epoch through create_dataset's DataLoader as comparable tuples."""
    t = skimage_photo("coffee", (40, 44))
    if not (root / "natural_T").exists():
        write_png(t, root / "natural_T" / "x.png")
        write_png(255 - t, root / "natural_I" / "x.png")
    opt = train_opt(root, "--dataset_size", "8", "--batch_size", "2", "--num_threads", str(workers),
                    "--natural_prob", "0.3", seed=seed)
    return [(batch["I"], batch["T"], batch["alpha"], batch["isNatural"], tuple(batch["T_path"]))
            for batch in create_dataset(opt)]


def same_stream(a: list[tuple], b: list[tuple]) -> bool:
    """Return True if two sample streams are identical."""
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2])
                                    and torch.equal(x[3], y[3]) and x[4] == y[4] for x, y in zip(a, b))


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: data worker processes
def test_seed_fixes_the_sample_stream(tmp_path: Path, workers: int) -> None:
    root = make_train_root(tmp_path)
    first = sample_stream(root, 5, workers)
    assert len(first) == 4
    assert same_stream(first, sample_stream(root, 5, workers))
    assert not same_stream(first, sample_stream(root, 6, workers))


@pytest.mark.slow
def test_the_sample_stream_is_the_same_with_any_number_of_workers(tmp_path: Path) -> None:
    root = make_train_root(tmp_path)
    without = sample_stream(root, 5, 0)
    assert same_stream(without, sample_stream(root, 5, 2)) and same_stream(without, sample_stream(root, 5, 1))
    assert any(bool(batch[3].any()) for batch in without) and not all(bool(batch[3].all()) for batch in without)


def test_a_loader_started_mid_epoch_gives_the_rest_of_the_epoch_without_loading_the_skipped_samples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_train_root(tmp_path)
    loader = create_dataset(train_opt(root, "--dataset_size", "8", "--batch_size", "2"))
    loader.sampler.set_epoch(3)
    whole = [(batch["I"], batch["T"], batch["alpha"], batch["isNatural"], tuple(batch["T_path"])) for batch in loader]
    built = []
    original = ResizeNatural3Dataset.__getitem__
    monkeypatch.setattr(ResizeNatural3Dataset, "__getitem__",
                        lambda self, key: built.append(key) or original(self, key))
    loader.sampler.set_epoch(3, start=4)
    rest = [(batch["I"], batch["T"], batch["alpha"], batch["isNatural"], tuple(batch["T_path"])) for batch in loader]
    assert len(rest) == 2 and same_stream(rest, whole[2:])
    assert [key.position for key in built] == [4, 5, 6, 7]


@pytest.mark.slow
def test_workers_draw_different_parameters(tmp_path: Path) -> None:
    root = make_train_root(tmp_path)
    opt = train_opt(root, "--dataset_size", "8", "--batch_size", "1", "--num_threads", "2", "--serial_batches")
    alphas = [float(batch["alpha"][0]) for batch in create_dataset(opt)]
    # Batches alternate between worker 0 and worker 1; each position draws its own parameters, whichever builds it.
    assert len(alphas) == 8
    assert all(alphas[k] != alphas[k + 1] for k in range(0, 8, 2))
    assert len(set(alphas)) == 8


# ----- large photos ----------------------------------------------------------------------------------------


def test_photos_over_550_pixels(tmp_path: Path) -> None:
    for i, name in enumerate(("astronaut", "chelsea")):
        write_png(skimage_photo(name, (640, 600)), tmp_path / "trainA1" / f"t{i}.jpg")
    write_png(skimage_photo("coffee", (640, 600)), tmp_path / "trainA2" / "r.jpg")
    dataset = ResizeNatural3Dataset(train_opt(tmp_path, "--preprocess", "none", "--dataset_size", "2"))
    for index in range(2):
        sample = dataset[index]
        assert sample["T"].shape == (3, 640, 600) and sample["I"].shape == (3, 640, 600)
        assert sample["T2"].shape == (3, 320, 300) and sample["T4"].shape == (3, 160, 150)
        for key in ("T", "I", "R"):
            assert torch.isfinite(sample[key]).all()
            assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0
        assert 0.8 < float(sample["alpha"]) <= 1.0
        assert float((sample["I"] - sample["T"]).abs().mean()) > 0.005


# ----- test samples ------------------------------------------------------------------------------------------


def test_input_only_has_black_ground_truth(tmp_path: Path) -> None:
    write_png(skimage_photo("rocket", (32, 40)), tmp_path / "testB" / "a.png")
    dataset = ResizeNatural3Dataset(eval_opt(tmp_path))
    assert len(dataset) == 1
    sample = dataset[0]
    assert (TRAIN_KEYS - {"bad_files"}) | {"has_gt"} <= set(sample) and "orig_size" not in sample
    assert sample["I"].shape == (3, 32, 40) and sample["T"].shape == (3, 32, 40)
    assert sample["T2"].shape == (3, 16, 20) and sample["T4"].shape == (3, 8, 10)
    assert float(sample["T"].abs().max()) == 0.0
    assert not bool(sample["has_gt"]) and sample["T_path"] == ""
    assert sample["I_path"] == str(tmp_path / "testB" / "a.png")


def test_pairs_by_name_and_rounds_sizes_down_with_bilinear(tmp_path: Path, capsys) -> None:
    write_png(skimage_photo("chelsea", (66, 70)), tmp_path / "testB" / "x.jpg")
    write_png(skimage_photo("coffee", (66, 70)), tmp_path / "testA1" / "x.png")  # same name, other extension
    write_png(skimage_photo("rocket", (40, 48)), tmp_path / "testB" / "y.png")  # no ground truth
    write_png(skimage_photo("astronaut", (40, 40)), tmp_path / "testA1" / "zz_orphan.png")  # no input
    opt = eval_opt(tmp_path)
    capsys.readouterr()
    dataset = ResizeNatural3Dataset(opt)
    out = capsys.readouterr().out
    assert "zz_orphan.png" in out and "note" in out
    assert len(dataset) == 2
    x, y = dataset[0], dataset[1]
    assert x["I_path"].endswith("x.jpg") and x["T_path"] == str(tmp_path / "testA1" / "x.png")
    assert bool(x["has_gt"]) and not bool(y["has_gt"]) and y["T_path"] == ""
    for sample, path in ((x["I"], tmp_path / "testB" / "x.jpg"), (x["T"], tmp_path / "testA1" / "x.png")):
        with Image.open(path) as img:
            expected = np.asarray(img.convert("RGB").resize((68, 64), Image.BILINEAR))
        assert sample.shape == (3, 64, 68)
        np.testing.assert_array_equal(as_uint8(sample), expected)
    assert y["I"].shape == (3, 40, 48)  # already multiples of 4: untouched
    np.testing.assert_array_equal(as_uint8(y["I"]), np.asarray(load_rgb(str(tmp_path / "testB" / "y.png"))))


@pytest.mark.parametrize("folder", ["testB", "testA1"])
def test_two_test_images_with_one_name_are_a_clear_error(tmp_path: Path, folder: str) -> None:
    write_png(skimage_photo("chelsea", (32, 40)), tmp_path / "testB" / "x.png")
    write_png(skimage_photo("rocket", (32, 40)), tmp_path / "testA1" / "x.png")
    write_png(skimage_photo("coffee", (32, 40)), tmp_path / folder / "x.jpg")  # which x is x's input or ground truth?
    with pytest.raises(UserError, match=rf"{folder}: x.jpg and x.png share the name 'x'.*rename one"):
        ResizeNatural3Dataset(eval_opt(tmp_path))


def test_keep_size_reflect_pads_to_multiple_of_4(tmp_path: Path) -> None:
    i_img, t_img = skimage_photo("chelsea", (66, 70)), skimage_photo("coffee", (66, 70))
    write_png(i_img, tmp_path / "testB" / "x.png")
    write_png(t_img, tmp_path / "testA1" / "x.png")
    sample = ResizeNatural3Dataset(eval_opt(tmp_path, "--keep_size"))[0]
    assert tuple(sample["orig_size"]) == (66, 70)
    for key, original in (("I", i_img), ("T", t_img)):
        padded = sample[key]
        assert padded.shape == (3, 68, 72)
        np.testing.assert_array_equal(as_uint8(padded[:, :66, :70]), original)
        # reflection without repeating the edge: row 66 mirrors row 64, column 70 mirrors column 68
        assert torch.equal(padded[:, 66, :70], padded[:, 64, :70]) and torch.equal(padded[:, 67], padded[:, 63])
        assert torch.equal(padded[:, :66, 70], padded[:, :66, 68]) and torch.equal(padded[:, :, 71], padded[:, :, 67])
    assert sample["T2"].shape == (3, 34, 36)
