"""The evaluation protocol: the --align size policy against PIL + scikit-image, test-set fingerprints, the spread
over several checkpoints against numpy, --pred on a machine without a device, and docs/protocol.md."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, run_script, write_png
from PIL import Image
from test_bad_input import save_random_generators
from test_evaluate import bandwise, mean_row, photo_pair, read

from util.errors import UserError

CPU = ["--gpu_ids", "-1"]
SIZES = ((45, 70), (70, 100), (64, 96))  # (H, W): two to be aligned down, one already a multiple of 32


def make_sized_set(root: Path) -> Path:
    """Write one pair per size of SIZES as testB/a<k>.png + testA1/a<k>.png; return root."""
    for k, size in enumerate(SIZES):
        i, t = photo_pair(k, size)
        write_png(i, root / "testB" / f"a{k}.png")
        write_png(t, root / "testA1" / f"a{k}.png")
    return root


def aligned(path: Path) -> np.ndarray:
    """Return the image at path as the ERRNet-family loaders align it: PIL's default resize to multiples of 32."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        return np.asarray(img.resize((w // 32 * 32, h // 32 * 32)))


def independent_identity(root: Path, transform=read) -> tuple[float, float]:
    """Return the mean band-wise (PSNR, SSIM) of each testB input against its testA1 ground truth, computed here."""
    values = [bandwise(transform(path), transform(root / "testA1" / path.name))
              for path in sorted((root / "testB").iterdir())]
    return tuple(np.mean(values, axis=0))


def evaluate_in_process(args: list) -> str:
    """Run evaluate.py's work in this process on CPU options; return what it printed."""
    import contextlib
    import io

    from evaluation.multiset import evaluate
    from options.evaluate_options import EvaluateOptions

    opt = EvaluateOptions().parse([str(a) for a in [*args, *CPU]], save=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        evaluate(opt)
    return out.getvalue()


# ----- 1. the --align size policy ----------------------------------------------------------------------------


def test_align_dataset_gives_pil_default_resize_of_input_and_ground_truth(tmp_path: Path, make_options) -> None:
    from data import open_test_set

    root = make_sized_set(tmp_path / "set")
    opt = make_options("test", "--dataroot", root, "--align", "32")
    dataset = open_test_set(opt)
    assert "multiples of 32" in dataset.size_policy() and dataset.size_policy_name() == "align32"
    for k in range(len(SIZES)):
        sample = dataset[k]
        for key, folder in (("I", "testB"), ("T", "testA1")):
            expected = aligned(root / folder / f"a{k}.png")
            got = (sample[key] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            assert got.shape == expected.shape and np.array_equal(got, expected), (k, key)


@pytest.mark.parametrize("args, needles", [
    (["--align", "30"], ("--align 30", "multiple of 4")),
    (["--align", "32", "--keep_size"], ("--align 32", "--keep_size", "choose one")),
])
def test_align_flag_errors_name_the_flags(tmp_path: Path, make_options, args, needles) -> None:
    from data import open_test_set

    root = make_sized_set(tmp_path / "set")
    with pytest.raises(UserError) as err:
        open_test_set(make_options("test", "--dataroot", root, *args))
    assert all(needle in str(err.value) for needle in needles)


def test_align_image_too_small_is_a_user_error_naming_it(tmp_path: Path, make_options) -> None:
    from data import open_test_set

    i, t = photo_pair(0, (30, 42))
    write_png(i, tmp_path / "set" / "testB" / "small.png")
    write_png(t, tmp_path / "set" / "testA1" / "small.png")
    with pytest.raises(UserError, match=r"small\.png: image of 42x30 pixels has a side shorter than 32.*--align 32"):
        open_test_set(make_options("test", "--dataroot", tmp_path / "set", "--align", "32"))[0]


def test_evaluate_pred_align_equals_pil_and_scikit_image(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    rng = np.random.default_rng(1)
    preds, expected = tmp_path / "preds", []
    for k in range(len(SIZES)):
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
    for k in range(len(SIZES) - 1):
        write_png(read(root / "testB" / f"a{k}.png"), originals / f"a{k}.png")
    write_png(aligned(root / "testB" / "a2.png"), originals / "a2.png")
    args = ["--sets", f"nat={root}", "--pred", originals, "--align", "32", "--json", out,
            "--results_dir", tmp_path / "res2"]
    with pytest.raises(UserError, match=r"a0\.png is 70x45 .* is 64x32 \(aligned to multiples of 32: --align 32\)"
                                         r".*--pred_resize"):
        evaluate_in_process(args)
    evaluate_in_process([*args, "--pred_resize"])
    resized = [np.asarray(Image.fromarray(read(originals / f"a{k}.png")).resize(aligned(root / "testA1" /
               f"a{k}.png").shape[1::-1], Image.BICUBIC)) for k in range(len(SIZES))]
    want = np.mean([bandwise(r, aligned(root / "testA1" / f"a{k}.png"))[0] for k, r in enumerate(resized)])
    assert json.loads(out.read_text())["nat"]["psnr"]["pred"] == pytest.approx(want, abs=1e-9)


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
    for k, (h, w) in enumerate(SIZES):
        assert read(images / f"a{k}_fake_Ts_03.png").shape == (h // 32 * 32, w // 32 * 32, 3)
    proc = run_script("test.py", "--dataroot", root, "--results_dir", tmp_path / "test", *common, *CPU)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "input and ground truth resized to multiples of 32" in proc.stdout
    row = mean_row(tmp_path / "test" / "rand" / "test_final" / "metrics.csv")
    assert row["PSNR_I"] == pytest.approx(in_psnr, abs=1e-9) and row["SSIM_I"] == pytest.approx(in_ssim, abs=1e-9)


def test_validation_align_scores_the_aligned_pair(tmp_path: Path, make_options) -> None:
    from evaluation.testing import load_test_model
    from evaluation.validation import open_validation_set, validate

    root = make_sized_set(tmp_path / "set")
    save_random_generators(tmp_path / "ck" / "rand")
    train_opt = make_options("train", "--dataroot", root, "--val_dataroot", root, "--val_align", "32")
    dataset = open_validation_set(train_opt)
    assert "multiples of 32" in dataset.size_policy()
    model = load_test_model(make_options("test", "--dataroot", root, "--name", "rand", "--epoch", "final",
                                         "--checkpoints_dir", tmp_path / "ck"))
    result = validate(model, dataset, train_opt)
    in_psnr, in_ssim = independent_identity(root, aligned)
    assert result.images == 3
    assert result.scores["I"] == pytest.approx((in_psnr, in_ssim), abs=1e-9)
    with pytest.raises(UserError, match="--val_align 32 with --val_keep_size"):
        open_validation_set(make_options("train", "--dataroot", root, "--val_dataroot", root, "--val_align", "32",
                                         "--val_keep_size"))


# ----- 2. fingerprints --------------------------------------------------------------------------------------


def test_fingerprint_is_the_sorted_pair_digests_and_ignores_names_and_order(tmp_path: Path) -> None:
    from data.fingerprint import fingerprint, pair_digest

    files = {}
    for name, content in (("i1", b"input one"), ("g1", b"truth one"), ("i2", b"input two"), ("g2", b"truth two")):
        files[name] = tmp_path / name
        files[name].write_bytes(content)
    sha = [hashlib.sha256(c).hexdigest() for c in (b"input one", b"truth one", b"input two", b"truth two")]
    lines = sorted([f"{sha[0]} {sha[1]}", f"{sha[2]} {sha[3]}"])
    expected = hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()[:12]
    digests = [pair_digest(str(files["i1"]), str(files["g1"])), pair_digest(str(files["i2"]), str(files["g2"]))]
    assert fingerprint(digests) == fingerprint(digests[::-1]) == expected
    swapped = [pair_digest(str(files["i1"]), str(files["g2"])), pair_digest(str(files["i2"]), str(files["g1"]))]
    assert fingerprint(swapped) != expected  # the same files paired otherwise are another test set
    files["g2"].write_bytes(b"truth twO")
    assert fingerprint([digests[0], pair_digest(str(files["i2"]), str(files["g2"]))]) != expected


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
    gt = read(copy / "transmission_layer" / "b.png").copy()
    gt[0, 0, 0] ^= 1
    write_png(gt, copy / "transmission_layer" / "b.png")
    evaluate_in_process(["--sets", f"two={copy}", "--pred", copy / "blended", "--name", "fp", "--json", out,
                         "--results_dir", tmp_path / "res"])
    assert json.loads(out.read_text())["two"]["fingerprint"] != value


# ----- 3. several checkpoints -------------------------------------------------------------------------------


def test_three_checkpoints_report_each_run_and_the_mean_and_sample_std_as_numpy(tmp_path: Path) -> None:
    root = make_sized_set(tmp_path / "set")
    second = make_sized_set(tmp_path / "second")
    for folder in ("testB", "testA1"):  # two sets of 3 and 2 pairs: the average is weighted
        (second / folder / "a2.png").unlink()
    epochs = ("60", "70", "80")
    for seed, epoch in enumerate(epochs):
        save_random_generators(tmp_path / "ck" / "rand", epoch, seed=seed)
    out, res = tmp_path / "out.json", tmp_path / "res"
    printed = evaluate_in_process(["--sets", f"one={root}", f"two={second}", "--name", "rand", "--epoch", *epochs,
                                   "--checkpoints_dir", tmp_path / "ck", "--json", out, "--results_dir", res])
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
        save_random_generators(tmp_path / "ck" / name, "final", seed=seed)
    out = tmp_path / "out.json"
    evaluate_in_process(["--sets", f"one={root}", "--name", "seed1", "seed2", "--epoch", "final", "--num_test", "1",
                         "--checkpoints_dir", tmp_path / "ck", "--json", out, "--results_dir", tmp_path / "res"])
    report = json.loads(out.read_text())
    assert list(report["one"]["runs"]) == ["seed1@final", "seed2@final"] and report["one"]["images"] == 1
    assert (tmp_path / "res" / "seed1+seed2" / "eval_final" / "index.html").is_file()


@pytest.mark.parametrize("args, needle", [
    (["--epoch", "60", "60"], "--epoch 60 60: 60 given twice"),
    (["--name", "a", "b", "--suffix", "x"], "--suffix x with several --name"),
    (["--epoch", "60", "70", "--load_iter", "5"], "--load_iter 5 replaces --epoch"),
    (["--epoch", "60", "70", "--pred", "DIR"], "--pred scores saved predictions"),
])
def test_run_list_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    from options.evaluate_options import EvaluateOptions

    with pytest.raises(UserError, match=re.escape(needle)):
        EvaluateOptions().parse(["--sets", f"x={tmp_path}", *args, *CPU], save=False)


# ----- 5. --pred needs no device ----------------------------------------------------------------------------


def test_pred_runs_without_a_device_and_names_its_folder_after_the_predictions(tmp_path: Path, cpu_only) -> None:
    from options.evaluate_options import EvaluateOptions, evaluation_folder

    sets = ["--sets", f"nature={tmp_path}"]
    opt = EvaluateOptions().parse([*sets, "--pred", "OUTPUTS/nature", "--gpu_ids", "0"], save=False)
    assert opt.gpu_ids == [] and evaluation_folder(opt) == "./results/eval_pred_nature"
    opt = EvaluateOptions().parse([*sets, "--pred", "OUTPUTS/nature", "--name", "ERRNet"], save=False)
    assert evaluation_folder(opt) == "./results/ERRNet/eval_pred"
    with pytest.raises(UserError, match="--gpu_ids 0: CUDA is not available"):
        EvaluateOptions().parse(sets, save=False)  # a checkpoint runs a network: the device is checked


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


# ----- 4. the protocol page ---------------------------------------------------------------------------------


def test_protocol_page_names_real_flags_and_every_policy_with_measured_baselines() -> None:
    from options.evaluate_options import EvaluateOptions

    page = (REPO_ROOT / "docs" / "protocol.md").read_text()
    assert "protocol.md" in (REPO_ROOT / "docs" / "evaluation.md").read_text()
    options = EvaluateOptions()
    options.gather_options(["--sets", "x=y"])
    known = set(options.parser._option_string_actions)
    flags = set(re.findall(r"`(--[a-z_]+)", page))
    assert {"--align", "--keep_size", "--psnr", "--pred", "--pred_resize", "--epoch"} <= flags
    assert flags - known - {"--if_align", "--val_align", "--val_keep_size"} == set()  # DSRNet's; training's
    for policy in ("released", "original", "align32"):
        rows = [line for line in page.splitlines() if line.startswith(f"| {policy} |")]
        assert {row.split("|")[2].strip() for row in rows} >= {"ceilnet_synthetic100", "real_pairs5"}, policy
