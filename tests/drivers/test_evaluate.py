"""evaluate.py: the same numbers as test.py, --pred against scikit-image, one-line errors."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script, skimage_photo, write_png
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from test_bad_input import assert_one_line_error, save_random_generators
from test_layouts import make_openrr_tree, make_rrw_tree

from data.layouts import find_pairs

CPU = ["--gpu_ids", "-1"]


def photo_pair(k: int, size: tuple[int, int] = (30, 42)) -> tuple[np.ndarray, np.ndarray]:
    """Return (input I, ground truth T) of size (H, W): photo k and photo k with a reflection added."""
    names = ("astronaut", "rocket", "coffee", "chelsea")
    t = skimage_photo(names[k % 4], size)
    r = skimage_photo(names[(k + 1) % 4], size)
    return np.clip(0.75 * t.astype(np.float64) + 0.35 * r, 0, 255).astype(np.uint8), t


def make_testb_set(root: Path, n: int, without_gt: int = 0) -> Path:
    """Write n pairs s0..s{n-1} in testB/testA1 and `without_gt` inputs without ground truth; return root."""
    for k in range(n + without_gt):
        i, t = photo_pair(k)
        write_png(i, root / "testB" / f"s{k}.png")
        if k < n:
            write_png(t, root / "testA1" / f"s{k}.png")
    return root


def make_blended_set(root: Path, n: int) -> Path:
    """Write n pairs b0.. in blended/ + transmission_layer/; return root."""
    for k in range(n):
        i, t = photo_pair(k + 2, size=(36, 28))
        write_png(i, root / "blended" / f"b{k}.png")
        write_png(t, root / "transmission_layer" / f"b{k}.png")
    return root


def mean_row(csv_path: Path) -> dict[str, float]:
    """Return the 'mean' row of a metrics.csv as column -> value."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["image"] == "mean"
    return {k: float(v) for k, v in rows[-1].items() if k != "image"}


def bandwise(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Return (band-wise PSNR, SSIM) computed here with scikit-image, channel by channel."""
    psnr = np.mean([peak_signal_noise_ratio(gt[..., c], pred[..., c], data_range=255) for c in range(3)])
    ssim = np.mean([structural_similarity(gt[..., c], pred[..., c], data_range=255) for c in range(3)])
    return float(psnr), float(ssim)


def read(path: Path) -> np.ndarray:
    """Return the image at path as an RGB array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class Links(HTMLParser):
    """Collects the href of every link of a page."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def test_checkpoint_numbers_equal_test_py_means(tmp_path: Path) -> None:
    ckpt = tmp_path / "ck"
    save_random_generators(ckpt / "rand")
    syn = make_testb_set(tmp_path / "syn", n=2, without_gt=1)
    real = make_blended_set(tmp_path / "real", n=1)
    common = ["--name", "rand", "--epoch", "final", "--checkpoints_dir", ckpt, *CPU]
    expected = {}
    for name, root in (("syn", syn), ("real", real)):
        proc = run_script("test.py", "--dataroot", root, "--results_dir", tmp_path / f"test_{name}", *common)
        assert proc.returncode == 0, proc.stderr[-3000:]
        expected[name] = mean_row(tmp_path / f"test_{name}" / "rand" / "test_final" / "metrics.csv")
    out = tmp_path / "out.json"
    proc = run_script("evaluate.py", "--sets", f"syn={syn}", f"real={real}", "--results_dir", tmp_path / "res",
                      "--json", out, *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "s2" in proc.stdout and "without ground truth are skipped" in proc.stdout  # listed once
    assert proc.stdout.count("without ground truth") == 1
    report = json.loads(out.read_text())
    assert list(report) == ["syn", "real", "average", "evaluation"]
    assert report["syn"]["images"] == 2 and report["real"]["images"] == 1 and report["average"]["images"] == 3
    for name in ("syn", "real"):
        for label in ("I", "T_1", "T_2", "T_3"):
            assert report[name]["psnr"][label] == pytest.approx(expected[name][f"PSNR_{label}"], abs=0.01)
            assert report[name]["ssim"][label] == pytest.approx(expected[name][f"SSIM_{label}"], abs=1e-4)
    for metric in ("psnr", "ssim"):  # the average is weighted by image count
        for label in ("I", "T_3"):
            weighted = (2 * report["syn"][metric][label] + report["real"][metric][label]) / 3
            assert report["average"][metric][label] == pytest.approx(weighted, rel=1e-12)
    # the Markdown table: a protocol header, one row per set, the average row
    assert "Metric protocol: PSNR per RGB channel" in proc.stdout
    assert "size: resized down to a multiple of 4" in proc.stdout
    assert "| syn | 2 | " in proc.stdout and "| real | 1 | " in proc.stdout and "| **average** | 3 | " in proc.stdout
    eval_dir = tmp_path / "res" / "rand" / "eval_final"
    links = Links()
    links.feed((eval_dir / "index.html").read_text())
    assert links.hrefs == ["syn/index.html", "real/index.html"]
    for name in ("syn", "real"):
        assert (eval_dir / name / "index.html").is_file()
        assert mean_row(eval_dir / name / "metrics.csv")["PSNR_T_3"] == pytest.approx(report[name]["psnr"]["T_3"])
    assert (eval_dir / "syn" / "images" / "s0_fake_Ts_03.png").is_file()


def test_pred_equals_scikit_image_and_identity_equals_the_input_column(tmp_path: Path) -> None:
    syn = make_testb_set(tmp_path / "syn", n=3, without_gt=1)
    rng = np.random.default_rng(0)
    preds, expected = tmp_path / "preds", []
    for k in range(3):
        gt = read(syn / "testA1" / f"s{k}.png")
        noise = rng.normal(0, [4.0, 12.0, 25.0], gt.shape)  # a different error in each channel
        pred = np.clip(gt + noise, 0, 255).astype(np.uint8)
        write_png(pred, preds / f"s{k}_out.png")
        expected.append((bandwise(pred, gt), bandwise(read(syn / "testB" / f"s{k}.png"), gt)))
    write_png(read(syn / "testB" / "s0.png"), preds / "s0_other.png")  # no suffix: not a prediction
    out = tmp_path / "out.json"
    proc = run_script("evaluate.py", "--sets", f"syn={syn}", f"same={syn}", "--pred", f"syn={preds}",
                      f"same={syn / 'testB'}", "--pred_suffix", "_out", "--results_dir", tmp_path / "res",
                      "--json", out, *CPU)
    assert proc.returncode != 0  # testB's files have no _out suffix
    assert_one_line_error(proc, "same", "no prediction for 3 of 3", "--pred_suffix '_out'")
    proc = run_script("evaluate.py", "--sets", f"syn={syn}", "--pred", preds, "--pred_suffix", "_out",
                      "--results_dir", tmp_path / "res", "--json", out, *CPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["syn"]["images"] == 3 and set(report["syn"]["psnr"]) == {"I", "pred"}
    pred_psnr, pred_ssim = np.mean([e[0] for e in expected], axis=0)
    in_psnr, in_ssim = np.mean([e[1] for e in expected], axis=0)
    assert report["syn"]["psnr"]["pred"] == pytest.approx(pred_psnr, abs=1e-9)
    assert report["syn"]["ssim"]["pred"] == pytest.approx(pred_ssim, abs=1e-9)
    assert report["syn"]["psnr"]["I"] == pytest.approx(in_psnr, abs=1e-9)
    assert report["syn"]["ssim"]["I"] == pytest.approx(in_ssim, abs=1e-9)
    assert "| syn | 3 | " in proc.stdout and "PSNR_pred" in proc.stdout
    # prediction = input: the pred column is the I column
    proc = run_script("evaluate.py", "--sets", f"syn={syn}", "--pred", syn / "testB", "--results_dir",
                      tmp_path / "res", "--json", out, *CPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["syn"]["psnr"]["pred"] == report["syn"]["psnr"]["I"] == pytest.approx(in_psnr, abs=1e-9)
    assert report["syn"]["ssim"]["pred"] == report["syn"]["ssim"]["I"]


def test_pred_resize_resizes_and_says_so(tmp_path: Path) -> None:
    syn = make_testb_set(tmp_path / "syn", n=1)
    gt = read(syn / "testA1" / "s0.png")
    small = np.asarray(Image.fromarray(gt).resize((40, 28), Image.BILINEAR))
    write_png(small, tmp_path / "preds" / "s0.png")
    out = tmp_path / "out.json"
    args = ["--sets", f"syn={syn}", "--pred", tmp_path / "preds", "--results_dir", tmp_path / "res", "--json", out,
            *CPU]
    assert_one_line_error(run_script("evaluate.py", *args), "40x28", "42x30", "--pred_resize")
    proc = run_script("evaluate.py", *args, "--pred_resize")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resized (bicubic)" in proc.stdout and "--pred_resize" in proc.stdout.split("Metric protocol:")[1]
    resized = np.asarray(Image.fromarray(small).resize((42, 30), Image.BICUBIC))
    assert json.loads(out.read_text())["syn"]["psnr"]["pred"] == pytest.approx(bandwise(resized, gt)[0], abs=1e-9)


def bad_input(tmp_path: Path, case: str) -> tuple[list, tuple[str, ...]]:
    """Return (evaluate.py arguments, words the error line must hold) for one kind of bad input."""
    syn = make_testb_set(tmp_path / "syn", n=1)
    preds = tmp_path / "preds"
    write_png(read(syn / "testB" / "s0.png"), preds / "s0.png")
    if case == "missing set folder":
        return ["--sets", f"x={tmp_path / 'nowhere'}"], ("--sets x=", "nowhere", "not found")
    if case == "malformed --sets entry":
        return ["--sets", str(syn)], ("expected NAME=DIR",)
    if case == "no pairs":
        nogt = make_testb_set(tmp_path / "nogt", n=0, without_gt=2)
        return ["--sets", f"x={nogt}"], ("x=", "no input has a ground truth")
    if case == "no layout":
        write_png(read(syn / "testB" / "s0.png"), tmp_path / "loose" / "photo.png")
        return ["--sets", f"x={tmp_path / 'loose'}"], ("no known test-set layout", "testB/ + testA1/", "-label1")
    if case == "size mismatch":
        write_png(read(syn / "testB" / "s0.png")[:20], preds / "s0.png")
        return ["--sets", f"x={syn}", "--pred", preds], ("42x20", "42x30", "--pred_resize")
    if case == "duplicate prediction stems":
        write_png(read(syn / "testB" / "s0.png"), preds / "s0.jpg")
        return ["--sets", f"x={syn}", "--pred", preds], ("s0.jpg and s0.png", "'s0'")
    if case == "duplicate input stems":
        write_png(read(syn / "testB" / "s0.png"), syn / "testB" / "s0.jpg")
        return ["--sets", f"x={syn}", "--pred", preds], ("s0.jpg and s0.png share the name 's0'",)
    if case == "missing prediction":
        (preds / "s0.png").rename(preds / "zz.png")
        return ["--sets", f"x={syn}", "--pred", preds], ("no prediction for 1 of 1", "s0")
    if case == "pred entry per set":
        return ["--sets", f"x={syn}", f"y={syn}", "--pred", preds], ("--pred", "one NAME=DIR per set")
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing set folder", "malformed --sets entry", "no pairs", "no layout",
                                  "size mismatch", "duplicate prediction stems", "duplicate input stems",
                                  "missing prediction", "pred entry per set"])
def test_bad_input_is_one_line_error(tmp_path: Path, case: str) -> None:
    from evaluation import multiset as evaluate
    from options.evaluate_options import EvaluateOptions
    from util.errors import UserError

    args, needles = bad_input(tmp_path, case)
    opt = EvaluateOptions().parse([str(a) for a in [*args, "--results_dir", tmp_path / "res", *CPU]],
                                           save=False)
    with pytest.raises(UserError) as err:
        evaluate.evaluate(opt)
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    args, needles = bad_input(tmp_path, "size mismatch")
    proc = run_script("evaluate.py", *args, "--results_dir", tmp_path / "res", "--checkpoints_dir", tmp_path / "c",
                      *CPU)
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)


def test_test_py_refuses_ground_truths_that_pair_with_nothing(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for k in range(2):
        i, t = photo_pair(k)
        write_png(i, root / "testB" / f"in_{k}.png")
        write_png(t, root / "testA1" / f"gt_{k}.png")
    proc = run_script("test.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *CPU)
    assert proc.returncode == 2
    assert_one_line_error(proc, "in_0.png", "gt_0.png", "--pair_by sorted")


def test_a_channel_identical_to_the_ground_truth_is_noted(tmp_path: Path, capsys) -> None:
    from evaluation import multiset as evaluate
    from options.evaluate_options import EvaluateOptions

    syn = make_testb_set(tmp_path / "syn", n=2)
    for k in range(2):
        pred = read(syn / "testA1" / f"s{k}.png").copy()
        if k == 1:
            pred[..., 0] //= 2  # red differs, green and blue are exact: band-wise PSNR is infinite
        write_png(pred, tmp_path / "preds" / f"s{k}.png")
    opt = EvaluateOptions().parse([str(a) for a in ["--sets", f"syn={syn}", "--pred", tmp_path / "preds",
                                                             "--results_dir", tmp_path / "res", "--json",
                                                             tmp_path / "out.json", *CPU]], save=False)
    capsys.readouterr()
    evaluate.evaluate(opt)
    out = capsys.readouterr().out
    assert "note: syn: 2 image(s) have a channel identical to the ground truth" in out and "s0, s1" in out
    assert "| syn | 2 | " in out and "| inf | " in out  # the pred column's mean PSNR
    saved = json.loads((tmp_path / "out.json").read_text())  # strict JSON: the infinite mean is null
    assert saved["syn"]["psnr"]["pred"] is None and saved["syn"]["ssim"]["pred"] > 0.5


# ----- the newer real data sets as distributed (docs/data.md, docs/evaluation.md) -------------------------


def newer_real_sets(tmp_path: Path) -> dict[str, Path]:
    """Return set name -> folder: the test split of an OpenRR-1k-shaped tree and an RRW-shaped tree."""
    return {"openrr_test": make_openrr_tree(tmp_path / "OpenRR-1k") / "test_100",
            "rrw": make_rrw_tree(tmp_path / "RRW")}


def input_column(root: Path) -> tuple[int, float, float]:
    """Return (pairs with a ground truth, mean band-wise PSNR, mean SSIM of the input against it) of a set."""
    scores = [bandwise(read(p.input), read(p.gt)) for p in find_pairs(str(root))[1] if p.gt]
    return len(scores), float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def test_an_openrr1k_split_and_an_rrw_tree_are_evaluated(tmp_path: Path, capsys) -> None:
    from evaluation import multiset as evaluate
    from options.evaluate_options import EvaluateOptions

    sets = newer_real_sets(tmp_path)
    save_random_generators(tmp_path / "ck" / "rand")
    out = tmp_path / "out.json"
    opt = EvaluateOptions().parse([str(a) for a in [
        "--sets", *(f"{name}={root}" for name, root in sets.items()), "--name", "rand", "--epoch", "final",
        "--checkpoints_dir", tmp_path / "ck", "--results_dir", tmp_path / "res", "--json", out, *CPU]], save=False)
    capsys.readouterr()
    evaluate.evaluate(opt)
    printed = capsys.readouterr().out
    assert "(openrr1k layout)" in printed and "(rrw layout)" in printed
    assert "rrw: 1 input(s) without ground truth are skipped: ref_hf3_nogt_scene_frame_000030" in printed
    report = json.loads(out.read_text())
    assert report["openrr_test"]["images"] == 2 and report["rrw"]["images"] == 5 and report["average"]["images"] == 7
    for name, root in sets.items():
        count, psnr, ssim = input_column(root)
        assert report[name]["images"] == count
        assert report[name]["psnr"]["I"] == pytest.approx(psnr, abs=1e-9)
        assert report[name]["ssim"]["I"] == pytest.approx(ssim, abs=1e-9)
        assert set(report[name]["psnr"]) == {"I", "T_1", "T_2", "T_3"}
    images = tmp_path / "res" / "rand" / "eval_final" / "rrw" / "images"
    assert (images / "reflection_camera1_room_frame_000055_fake_Ts_03.png").is_file()


@pytest.mark.slow
def test_evaluate_py_scores_saved_predictions_on_the_newer_real_sets(tmp_path: Path) -> None:
    """End to end: predictions named as the pairs (an RRW frame by <session>_<scene>_<frame>) are the inputs, so
    the pred column is the I column."""
    sets = newer_real_sets(tmp_path)
    for name, root in sets.items():
        for pair in find_pairs(str(root))[1]:
            write_png(read(pair.input), tmp_path / "preds" / name / f"{pair.name}.png")
    out = tmp_path / "out.json"
    proc = run_script("evaluate.py", "--sets", *(f"{name}={root}" for name, root in sets.items()), "--pred",
                      *(f"{name}={tmp_path / 'preds' / name}" for name in sets), "--results_dir", tmp_path / "res",
                      "--json", out, *CPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for name, root in sets.items():
        count, psnr, _ = input_column(root)
        assert report[name]["images"] == count
        assert report[name]["psnr"]["pred"] == report[name]["psnr"]["I"] == pytest.approx(psnr, abs=1e-9)
