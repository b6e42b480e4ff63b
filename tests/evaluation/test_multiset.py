"""evaluate.py's work in this process (evaluation/multiset.py): several sets and checkpoints, saved predictions, the
--align size policy, fingerprints, one-line errors. tests/drivers/test_evaluate.py runs evaluate.py itself."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    SIZED_SET,
    aligned,
    bandwise,
    independent_identity,
    input_column,
    make_sized_set,
    make_testb_set,
    mean_row,
    newer_real_sets,
    read_rgb,
    run_script,
    save_random_generators,
    write_png,
)
from PIL import Image

from evaluation.multiset import evaluate
from options.evaluate_options import EvaluateOptions
from util.errors import UserError

CPU = ["--gpu_ids", "-1"]


def evaluate_in_process(args: list) -> str:
    """Run evaluate.py's work in this process on CPU options; return what it printed."""
    import contextlib
    import io

    opt = EvaluateOptions().parse([str(a) for a in [*args, *CPU]], save=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        evaluate(opt)
    return out.getvalue()


# ----- saved predictions, the --align size policy ----------------------------------------------------------


def test_evaluate_pred_align_equals_pil_and_scikit_image(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    rng = np.random.default_rng(1)
    preds, expected = tmp_path / "preds", []
    for k in range(len(SIZED_SET)):
        gt = aligned(root / "testA1" / f"a{k}.png")
        pred = np.clip(gt + rng.normal(0, [3.0, 9.0, 20.0], gt.shape), 0, 255).astype(np.uint8)
        write_png(pred, preds / f"a{k}.png")  # predictions at the aligned size
        expected.append(bandwise(pred, gt))
    out = tmp_path / "out.json"
    printed = evaluate_in_process(["--sets", f"nat={root}", "--pred", preds, "--align", "32", "--json", out,
                                   "--results_dir", tmp_path / "res"])
    report = json.loads(out.read_text())
    assert report["nat"]["psnr"]["pred"] == pytest.approx(np.mean([e[0] for e in expected]), abs=1e-9)
    assert report["nat"]["ssim"]["pred"] == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-9)
    in_psnr, in_ssim = independent_identity(root, aligned)
    assert report["nat"]["psnr"]["I"] == pytest.approx(in_psnr, abs=1e-9)
    assert report["nat"]["ssim"]["I"] == pytest.approx(in_ssim, abs=1e-9)
    assert report["evaluation"]["size_policy"] == "align32" and "multiples of 32" in report["evaluation"]["protocol"]
    assert "Metric protocol:" in printed and "multiples of 32" in printed.split("Metric protocol:")[1].split("\n")[0]
    # the identity at the original size is lower here: aligning changes the numbers being compared
    assert independent_identity(root) != pytest.approx((in_psnr, in_ssim), abs=1e-3)

    # predictions at the original size: an error naming the aligned size, unless --pred_resize
    originals = tmp_path / "originals"
    for k in range(len(SIZED_SET) - 1):
        write_png(read_rgb(root / "testB" / f"a{k}.png"), originals / f"a{k}.png")
    write_png(aligned(root / "testB" / "a2.png"), originals / "a2.png")
    args = ["--sets", f"nat={root}", "--pred", originals, "--align", "32", "--json", out,
            "--results_dir", tmp_path / "res2"]
    with pytest.raises(UserError, match=r"a0\.png is 70x45 .* is 64x32 \(aligned to multiples of 32: --align 32\)"
                                         r".*--pred_resize"):
        evaluate_in_process(args)
    evaluate_in_process([*args, "--pred_resize"])
    resized = [np.asarray(Image.fromarray(read_rgb(originals / f"a{k}.png")).resize(aligned(root / "testA1" /
               f"a{k}.png").shape[1::-1], Image.BICUBIC)) for k in range(len(SIZED_SET))]
    want = np.mean([bandwise(r, aligned(root / "testA1" / f"a{k}.png"))[0] for k, r in enumerate(resized)])
    assert json.loads(out.read_text())["nat"]["psnr"]["pred"] == pytest.approx(want, abs=1e-9)


@pytest.mark.slow
def test_align_in_evaluate_and_test_py_scores_the_aligned_pair(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    ckpt = tmp_path / "ck"
    save_random_generators(ckpt / "rand")
    in_psnr, in_ssim = independent_identity(root, aligned)
    common = ["--name", "rand", "--epoch", "final", "--checkpoints_dir", ckpt, "--align", "32"]
    out = tmp_path / "out.json"
    evaluate_in_process(["--sets", f"nat={root}", "--json", out, "--results_dir", tmp_path / "res", *common])
    report = json.loads(out.read_text())
    assert report["nat"]["psnr"]["I"] == pytest.approx(in_psnr, abs=1e-9)
    assert report["nat"]["ssim"]["I"] == pytest.approx(in_ssim, abs=1e-9)
    assert report["evaluation"]["size_policy"] == "align32"
    images = tmp_path / "res" / "rand" / "eval_final" / "nat" / "images"
    for k, (h, w) in enumerate(SIZED_SET):
        assert read_rgb(images / f"a{k}_fake_Ts_03.png").shape == (h // 32 * 32, w // 32 * 32, 3)
    proc = run_script("test.py", "--dataroot", root, "--results_dir", tmp_path / "test", *common, *CPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "input and ground truth resized to multiples of 32" in proc.stdout
    row = mean_row(tmp_path / "test" / "rand" / "test_final" / "metrics.csv")
    assert row["PSNR_I"] == pytest.approx(in_psnr, abs=1e-9) and row["SSIM_I"] == pytest.approx(in_ssim, abs=1e-9)


# ----- fingerprints -----------------------------------------------------------------------------------------


def test_fingerprint_in_table_json_and_pages_is_stable_under_copy_and_reorder(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    # the same files elsewhere, in another layout, under other names that sort in another order
    copy = tmp_path / "elsewhere" / "copy"
    (copy / "blended").mkdir(parents=True)
    (copy / "transmission_layer").mkdir()
    for k, new in enumerate(("z", "b", "m")):
        shutil.copyfile(root / "testB" / f"a{k}.png", copy / "blended" / f"{new}.png")
        shutil.copyfile(root / "testA1" / f"a{k}.png", copy / "transmission_layer" / f"{new}.png")
    out = tmp_path / "out.json"
    printed = evaluate_in_process(["--sets", f"one={root}", f"two={copy}", "--pred", f"one={root / 'testB'}",
                                   f"two={copy / 'blended'}", "--name", "fp", "--json", out,
                                   "--results_dir", tmp_path / "res"])
    report = json.loads(out.read_text())
    value = report["one"]["fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{12}", value) and report["two"]["fingerprint"] == value
    assert report["average"]["fingerprint"] != value  # six pairs
    assert f"one 3 pairs, fingerprint {value}; two 3 pairs, fingerprint {value}" in printed
    folder = tmp_path / "res" / "fp" / "eval_pred"
    assert value in (folder / "index.html").read_text()
    assert f"Test set: 3 pairs, fingerprint {value}." in (folder / "one" / "index.html").read_text()

    # one changed pixel value: other bytes, another fingerprint
    gt = read_rgb(copy / "transmission_layer" / "b.png").copy()
    gt[0, 0, 0] ^= 1
    write_png(gt, copy / "transmission_layer" / "b.png")
    evaluate_in_process(["--sets", f"two={copy}", "--pred", copy / "blended", "--name", "fp", "--json", out,
                         "--results_dir", tmp_path / "res"])
    assert json.loads(out.read_text())["two"]["fingerprint"] != value


# ----- several checkpoints, several names -------------------------------------------------------------------


def test_three_checkpoints_report_each_run_and_the_mean_and_sample_std_as_numpy(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    second = make_sized_set(tmp_path / "second")
    for folder in ("testB", "testA1"):  # two sets of 3 and 2 pairs: the average is weighted
        (second / folder / "a2.png").unlink()
    epochs = ("60", "70", "80")
    for seed, epoch in enumerate(epochs):
        save_random_generators(tmp_path / "ck" / "rand", epoch, seed=seed, ngf=8)
    out, res = tmp_path / "out.json", tmp_path / "res"
    printed = evaluate_in_process(["--sets", f"one={root}", f"two={second}", "--name", "rand", "--epoch", *epochs,
                                   "--ngf", "8", "--checkpoints_dir", tmp_path / "ck", "--json", out, "--results_dir",
                                   res])
    report = json.loads(out.read_text())
    assert list(report) == ["one", "two", "average", "evaluation"]
    labels = [f"rand@{e}" for e in epochs]
    assert report["evaluation"]["runs"] == labels and "n-1" in report["evaluation"]["spread"]
    per_run = {name: [mean_row(res / "rand" / f"eval_{e}" / name / "metrics.csv") for e in epochs]
               for name in ("one", "two")}
    per_run["average"] = [{c: (3 * a[c] + 2 * b[c]) / 5 for c in a} for a, b in zip(per_run["one"], per_run["two"])]
    assert per_run["one"][0]["PSNR_T_3"] != pytest.approx(per_run["one"][1]["PSNR_T_3"], abs=1e-6)
    for name, rows in per_run.items():
        assert report[name]["images"] == {"one": 3, "two": 2, "average": 5}[name]
        for metric in ("psnr", "ssim"):
            for label in ("I", "T_1", "T_3"):
                values = np.array([row[f"{metric.upper()}_{label}"] for row in rows])
                for run, value in zip(labels, values):
                    assert report[name]["runs"][run][metric][label] == pytest.approx(value, abs=1e-9)
                assert report[name][metric][label] == pytest.approx(np.mean(values), abs=1e-9)
                assert report[name][f"{metric}_std"][label] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
    mean, std = report["average"]["psnr"]["T_3"], report["average"]["psnr_std"]["T_3"]
    assert f"| **average** | 5 | **mean ± std** | {report['average']['psnr']['I']:.2f} ± 0.00 |" in printed
    assert f"{mean:.2f} ± {std:.2f}" in printed and "| one | 3 | rand@70 | " in printed
    summary = res / "rand" / "eval_60_70_80" / "index.html"
    text = summary.read_text()
    assert f"{mean:.2f} ± {std:.2f}" in text and 'href="../eval_70/two/index.html"' in text
    assert all((res / "rand" / f"eval_{e}" / "index.html").is_file() for e in epochs)


def test_several_names_are_evaluated_at_each_epoch(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    for seed, name in enumerate(("seed1", "seed2")):
        save_random_generators(tmp_path / "ck" / name, "final", seed=seed, ngf=8)
    out = tmp_path / "out.json"
    evaluate_in_process(["--sets", f"one={root}", "--name", "seed1", "seed2", "--epoch", "final", "--num_test", "1",
                         "--ngf", "8", "--checkpoints_dir", tmp_path / "ck", "--json", out, "--results_dir",
                         tmp_path / "res"])
    report = json.loads(out.read_text())
    assert list(report["one"]["runs"]) == ["seed1@final", "seed2@final"] and report["one"]["images"] == 1
    assert (tmp_path / "res" / "seed1+seed2" / "eval_final" / "index.html").is_file()


# ----- bad input, odd scores, the newer real sets ------------------------------------------------------------


def bad_input(tmp_path: Path, case: str) -> tuple[list, tuple[str, ...]]:
    """Return (evaluate.py arguments, words the error line must hold) for one kind of bad input."""
    syn = make_testb_set(tmp_path / "syn", n=1)
    preds = tmp_path / "preds"
    write_png(read_rgb(syn / "testB" / "s0.png"), preds / "s0.png")
    if case == "missing set folder":
        return ["--sets", f"x={tmp_path / 'nowhere'}"], ("--sets x=", "nowhere", "not found")
    if case == "malformed --sets entry":
        return ["--sets", str(syn)], ("expected NAME=DIR",)
    if case == "no pairs":
        nogt = make_testb_set(tmp_path / "nogt", n=0, without_gt=2)
        return ["--sets", f"x={nogt}"], ("x=", "no input has a ground truth")
    if case == "no layout":
        write_png(read_rgb(syn / "testB" / "s0.png"), tmp_path / "loose" / "photo.png")
        return ["--sets", f"x={tmp_path / 'loose'}"], ("no known test-set layout", "testB/ + testA1/", "-label1")
    if case == "size mismatch":
        write_png(read_rgb(syn / "testB" / "s0.png")[:20], preds / "s0.png")
        return ["--sets", f"x={syn}", "--pred", preds], ("42x20", "42x30", "--pred_resize")
    if case == "duplicate prediction stems":
        write_png(read_rgb(syn / "testB" / "s0.png"), preds / "s0.jpg")
        return ["--sets", f"x={syn}", "--pred", preds], ("s0.jpg and s0.png", "'s0'")
    if case == "duplicate input stems":
        write_png(read_rgb(syn / "testB" / "s0.png"), syn / "testB" / "s0.jpg")
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
    args, needles = bad_input(tmp_path, case)
    opt = EvaluateOptions().parse([str(a) for a in [*args, "--results_dir", tmp_path / "res", *CPU]],
                                           save=False)
    with pytest.raises(UserError) as err:
        evaluate(opt)
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


def test_a_channel_identical_to_the_ground_truth_is_noted(tmp_path: Path, capsys) -> None:
    syn = make_testb_set(tmp_path / "syn", n=2)
    for k in range(2):
        pred = read_rgb(syn / "testA1" / f"s{k}.png").copy()
        if k == 1:
            pred[..., 0] //= 2  # red differs, green and blue are exact: band-wise PSNR is infinite
        write_png(pred, tmp_path / "preds" / f"s{k}.png")
    opt = EvaluateOptions().parse([str(a) for a in ["--sets", f"syn={syn}", "--pred", tmp_path / "preds",
                                                             "--results_dir", tmp_path / "res", "--json",
                                                             tmp_path / "out.json", *CPU]], save=False)
    capsys.readouterr()
    evaluate(opt)
    out = capsys.readouterr().out
    assert "note: syn: 2 image(s) have a channel identical to the ground truth" in out and "s0, s1" in out
    assert "| syn | 2 | " in out and "| inf | " in out  # the pred column's mean PSNR
    saved = json.loads((tmp_path / "out.json").read_text())  # strict JSON: the infinite mean is null
    assert saved["syn"]["psnr"]["pred"] is None and saved["syn"]["ssim"]["pred"] > 0.5


def test_an_openrr1k_split_and_an_rrw_tree_are_evaluated(tmp_path: Path, capsys) -> None:
    sets = newer_real_sets(tmp_path)
    save_random_generators(tmp_path / "ck" / "rand", ngf=8)
    out = tmp_path / "out.json"
    opt = EvaluateOptions().parse([str(a) for a in [
        "--sets", *(f"{name}={root}" for name, root in sets.items()), "--name", "rand", "--epoch", "final",
        "--ngf", "8", "--checkpoints_dir", tmp_path / "ck", "--results_dir", tmp_path / "res", "--json", out, *CPU]],
        save=False)
    capsys.readouterr()
    evaluate(opt)
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
