"""evaluate.py run as a user runs it: the same numbers as test.py, --pred against scikit-image, --pred_resize, the
README's example on a GPU-less machine, one-line errors with exit status 2. Every test here starts evaluate.py
(the slow tier); tests/evaluation/test_multiset.py runs its work in-process."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    assert_one_line_error,
    bandwise,
    independent_identity,
    input_column,
    make_sized_set,
    make_testb_set,
    mean_row,
    newer_real_sets,
    photo_pair,
    read_rgb,
    run_script,
    save_random_generators,
    write_png,
)
from PIL import Image

from data.layouts import find_pairs

pytestmark = pytest.mark.slow

CPU = ["--gpu_ids", "-1"]


def make_blended_set(root: Path, n: int) -> Path:
    """Write n pairs b0.. in blended/ + transmission_layer/; return root."""
    for k in range(n):
        i, t = photo_pair(k + 2, size=(36, 28))
        write_png(i, root / "blended" / f"b{k}.png")
        write_png(t, root / "transmission_layer" / f"b{k}.png")
    return root


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
        gt = read_rgb(syn / "testA1" / f"s{k}.png")
        noise = rng.normal(0, [4.0, 12.0, 25.0], gt.shape)  # a different error in each channel
        pred = np.clip(gt + noise, 0, 255).astype(np.uint8)
        write_png(pred, preds / f"s{k}_out.png")
        expected.append((bandwise(pred, gt), bandwise(read_rgb(syn / "testB" / f"s{k}.png"), gt)))
    write_png(read_rgb(syn / "testB" / "s0.png"), preds / "s0_other.png")  # no suffix: not a prediction
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
    gt = read_rgb(syn / "testA1" / "s0.png")
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


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    # The "size mismatch" case of tests/evaluation/test_multiset.py's bad input, through evaluate.py's exit path.
    syn = make_testb_set(tmp_path / "syn", n=1)
    write_png(read_rgb(syn / "testB" / "s0.png")[:20], tmp_path / "preds" / "s0.png")
    proc = run_script("evaluate.py", "--sets", f"x={syn}", "--pred", tmp_path / "preds", "--results_dir",
                      tmp_path / "res", "--checkpoints_dir", tmp_path / "c", *CPU)
    assert proc.returncode == 2
    assert_one_line_error(proc, "42x20", "42x30", "--pred_resize")


def test_readme_pred_example_runs_on_a_gpu_less_machine(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "DATA" / "nature")
    shutil.copytree(root / "testB", tmp_path / "OUTPUTS" / "nature")
    proc = run_script("evaluate.py", "--sets", "nature=DATA/nature", "--pred", "OUTPUTS/nature", cwd=tmp_path,
                      cuda_visible=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "results" / "eval_pred_nature"
    assert (folder / "index.html").is_file() and (folder / "nature" / "metrics.csv").is_file()
    psnr, ssim = independent_identity(root)
    row = mean_row(folder / "nature" / "metrics.csv")
    assert row["PSNR_pred"] == pytest.approx(psnr, abs=1e-9) and row["SSIM_pred"] == pytest.approx(ssim, abs=1e-9)
    assert f"| nature | 3 | {psnr:.2f} | {ssim:.4f} | {psnr:.2f} | {ssim:.4f} |" in proc.stdout


def test_evaluate_py_scores_saved_predictions_on_the_newer_real_sets(tmp_path: Path) -> None:
    """End to end: predictions named as the pairs (an RRW frame by <session>_<scene>_<frame>) are the inputs, so
    the pred column is the I column."""
    sets = newer_real_sets(tmp_path)
    for name, root in sets.items():
        for pair in find_pairs(str(root))[1]:
            write_png(read_rgb(pair.input), tmp_path / "preds" / name / f"{pair.name}.png")
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
