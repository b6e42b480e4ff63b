"""Validation during training, the best checkpoint, and resuming with a longer schedule."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO_ROOT,
    TORCHRUN,
    aligned,
    assert_same_weights,
    build_tiny_dataset,
    independent_identity,
    load_state,
    make_sized_set,
    run_script,
    save_random_generators,
    script_env,
)

from models.ibcln_model import ROLES
from util.distributed import weight_difference_in
from util.errors import UserError
from util.files import atomic_torch_save
from util.logs import val_columns

VAL_COLUMNS = val_columns(ROLES.labels)


def train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    """Return train.py flags for a CPU run of 2 iterations per epoch at 32x32, lr constant (niter_decay 0)."""
    return ["--dataroot", str(root), "--name", name, "--model", "IBCLN", "--checkpoints_dir", str(ckpt),
            "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random", "--dataset_size", "4",
            "--batch_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0", "--seed", "3",
            "--niter_decay", "0", "--print_freq", "100", *extra]


def train(*args: str) -> subprocess.CompletedProcess:
    """Run train.py and assert that it succeeded."""
    proc = run_script("train.py", *args, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_log(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Return the header and the rows of a val_log.csv."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 2-epoch run validating every epoch with --save_best, and the same schedule as 1 epoch + extension."""
    base = tmp_path_factory.mktemp("val")
    root = build_tiny_dataset(base / "data", n_test=2)
    ckpt = base / "checkpoints"
    full = train(*train_args(root, ckpt, "full", "--niter", "2", "--save_epoch_freq", "1", "--val_dataroot",
                             str(root), "--save_best"))
    train(*train_args(root, ckpt, "extended", "--niter", "1"))
    extended = train(*train_args(root, ckpt, "extended", "--niter", "2", "--continue_train"))
    return {"root": root, "ckpt": ckpt, "full_out": full.stdout, "extended_out": extended.stdout, "base": base}


@pytest.mark.slow
def test_extending_a_finished_run_equals_the_uninterrupted_longer_run(runs):
    """--niter 1 then --niter 2 --continue_train trains epoch 2 at the new schedule's lr: bit-identical weights.

    The uninterrupted run also validated every epoch, so this shows that validation leaves training unchanged.
    """
    out = runs["extended_out"]
    assert "niter 1 -> 2" in out and out.count("note: the learning-rate schedule changed") == 1
    assert_same_weights(runs["ckpt"] / "full", runs["ckpt"] / "extended", "final", "final")
    state = load_state(runs["ckpt"] / "extended" / "final_train_state.pth")
    assert state["schedule"]["niter"] == 2 and state["epoch"] == 2


@pytest.mark.slow
def test_unchanged_resume_from_epoch_1_equals_the_uninterrupted_run(runs, tmp_path):
    ckpt = tmp_path / "c"
    (ckpt / "full").mkdir(parents=True)
    for file in (runs["ckpt"] / "full").glob("1_*.pth"):
        shutil.copy(file, ckpt / "full" / file.name)
    out = train(*train_args(runs["root"], ckpt, "full", "--niter", "2", "--continue_train", "--epoch", "1")).stdout
    assert "resuming after epoch 1" in out and "schedule changed" not in out
    assert_same_weights(runs["ckpt"] / "full", ckpt / "full", "final", "final")


@pytest.mark.slow
def test_val_log_has_one_row_per_epoch_and_matches_test_py_on_the_best_checkpoint(runs, tmp_path):
    header, rows = read_log(runs["ckpt"] / "full" / "val_log.csv")
    assert header == VAL_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["samples"]) for r in rows] == [4, 8]
    assert all(int(r["images"]) == 2 and float(r["lr"]) == 0.0002 and float(r["seconds"]) > 0 for r in rows)
    assert runs["full_out"].count("validation after epoch") == 2
    psnr = [float(r["PSNR_T_3"]) for r in rows]
    best_epoch = int(rows[psnr.index(max(psnr))]["epoch"])
    best = runs["ckpt"] / "full"
    assert load_state(best / "best_train_state.pth")["epoch"] == best_epoch
    assert_same_weights(best, best, "best", str(best_epoch))
    for prefix, row in (("best", rows[best_epoch - 1]), ("1", rows[0])):
        proc = run_script("test.py", "--dataroot", runs["root"], "--name", "full", "--checkpoints_dir", runs["ckpt"],
                          "--results_dir", tmp_path, "--gpu_ids", "-1", "--epoch", prefix)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(tmp_path / "full" / f"test_{prefix}" / "metrics.csv", newline="") as f:
            mean = [r for r in csv.DictReader(f) if r["image"] == "mean"][0]
        for column in VAL_COLUMNS[5:]:
            tolerance = 0.01 if column.startswith("PSNR") else 1e-4
            assert float(mean[column]) == pytest.approx(float(row[column]), abs=tolerance), (prefix, column)


@pytest.mark.slow
def test_resumed_run_keeps_a_better_best_and_appends_to_the_log(runs, tmp_path):
    ckpt = tmp_path / "c"
    shutil.copytree(runs["ckpt"] / "full", ckpt / "full")
    state_path = ckpt / "full" / "best_train_state.pth"
    state = load_state(state_path)
    state["extra"]["PSNR_T_3"] = 99.0  # a best no later epoch of this tiny run can reach
    atomic_torch_save(state, str(state_path))
    before = {p.name: p.read_bytes() for p in (ckpt / "full").glob("best_*.pth")}
    out = train(*train_args(runs["root"], ckpt, "full", "--niter", "3", "--continue_train", "--val_dataroot",
                            str(runs["root"]), "--save_best")).stdout
    assert "best so far: PSNR_T_3 99.0000" in out and "saved 'best'" not in out
    assert before == {p.name: p.read_bytes() for p in (ckpt / "full").glob("best_*.pth")}
    header, rows = read_log(ckpt / "full" / "val_log.csv")
    assert header == VAL_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (ckpt / "full" / "val_log.csv").read_text().count("epoch,samples") == 1


@pytest.mark.slow
def test_undecodable_validation_image_is_skipped_with_one_warning_and_counted(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=2)
    (root / "testB" / "img9.png").write_bytes(b"not a png")
    shutil.copy(root / "testA1" / "img0.png", root / "testA1" / "img9.png")
    proc = train(*train_args(root, tmp_path / "c", "bad", "--niter", "1", "--val_dataroot", str(root),
                             "--dataset_size", "2"))
    assert proc.stderr.count("img9.png: cannot be decoded") == 1
    assert "1 undecodable skipped" in proc.stdout
    _, rows = read_log(tmp_path / "c" / "bad" / "val_log.csv")
    assert [r["images"] for r in rows] == ["2"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "no_testB", "no_ground_truth", "best_without_val"])
def test_bad_validation_input_is_one_line_error_before_training(tmp_path, case):
    root = build_tiny_dataset(tmp_path / "d", n_test=2)
    val = tmp_path / "v"
    expected = {"missing": f"--val_dataroot {val}: folder not found",
                "no_testB": f"{val}: no known test-set layout ({val / 'testB'} not found",
                "no_ground_truth": f"{val / 'testB' / 'img1.png'}: validation input without a ground truth",
                "best_without_val": "--save_best needs --val_dataroot"}[case]
    extra = ["--val_dataroot", str(val)]
    if case == "no_testB":
        val.mkdir()
    elif case == "no_ground_truth":
        shutil.copytree(root / "testB", val / "testB")
        shutil.copytree(root / "testA1", val / "testA1")
        (val / "testA1" / "img1.png").unlink()
    elif case == "best_without_val":
        extra = ["--save_best"]
    proc = run_script("train.py", *train_args(root, tmp_path / "c", "bad", "--niter", "1", *extra))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "model [IBCLNModel] was created" not in proc.stdout
    assert not list((tmp_path / "c" / "bad").glob("*.pth"))


@pytest.mark.slow
def test_torchrun_validates_once_per_epoch_on_rank_0(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=2)
    ckpt = tmp_path / "c"
    command = [*TORCHRUN, str(REPO_ROOT / "train.py"),
               *train_args(root, ckpt, "ddp", "--niter", "2", "--batch_size", "1", "--val_dataroot", str(root),
                           "--save_best")]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("validation after epoch") == 2
    assert "DDP: 2 processes" in proc.stdout and weight_difference_in(proc.stdout) == 0  # ranks in sync
    _, rows = read_log(ckpt / "ddp" / "val_log.csv")
    # 4 samples per epoch over 2 processes: 'samples' counts both processes' share
    assert [(r["epoch"], r["samples"], r["images"]) for r in rows] == [("1", "4", "2"), ("2", "8", "2")]
    assert (ckpt / "ddp" / "best_net_G_T.pth").is_file() and (ckpt / "ddp" / "best_train_state.pth").is_file()


def test_validation_align_scores_the_aligned_pair(tmp_path: Path, make_options) -> None:
    from evaluation.testing import load_test_model
    from evaluation.validation import open_validation_set, validate

    root = make_sized_set(tmp_path / "set")
    save_random_generators(tmp_path / "ck" / "rand", ngf=8)
    train_opt = make_options("train", "--dataroot", root, "--val_dataroot", root, "--val_align", "32")
    dataset = open_validation_set(train_opt)
    assert "multiples of 32" in dataset.size_policy()
    model = load_test_model(make_options("test", "--dataroot", root, "--name", "rand", "--epoch", "final",
                                         "--checkpoints_dir", tmp_path / "ck", "--ngf", "8"))
    result = validate(model, dataset, train_opt)
    in_psnr, in_ssim = independent_identity(root, aligned)
    assert result.images == 3
    assert result.scores["I"] == pytest.approx((in_psnr, in_ssim), abs=1e-9)
    with pytest.raises(UserError, match="--val_align 32 with --val_keep_size"):
        open_validation_set(make_options("train", "--dataroot", root, "--val_dataroot", root, "--val_align", "32",
                                         "--val_keep_size"))


@pytest.fixture
def validation_setup(tmp_path, make_options):
    """Return (a test model with random generators, the validation set of a tiny folder, the training options)."""
    from evaluation.testing import load_test_model
    from evaluation.validation import open_validation_set

    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=2)
    save_random_generators(tmp_path / "ck" / "rand", ngf=8)
    train_opt = make_options("train", "--dataroot", root, "--val_dataroot", root)
    model = load_test_model(make_options("test", "--dataroot", root, "--name", "rand", "--epoch", "final",
                                         "--checkpoints_dir", tmp_path / "ck", "--ngf", "8"))
    return model, open_validation_set(train_opt), train_opt


@pytest.mark.parametrize("fails", [False, True])
def test_validation_runs_without_cudnn_benchmark_and_restores_it(validation_setup, kernel_flags, fails):
    from evaluation.validation import validate

    model, dataset, opt = validation_setup
    seen, original = [], model.test

    def recording_test(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        if fails:
            raise RuntimeError("stop")
        return original(*args, **kwargs)

    model.test = recording_test
    torch.backends.cudnn.benchmark = True  # as training sets it for its fixed crop size
    if fails:
        with pytest.raises(RuntimeError, match="stop"):
            validate(model, dataset, opt)
    else:
        assert validate(model, dataset, opt).images == 2
    assert seen == [False] * (1 if fails else 2)  # every validation image runs without autotuning
    assert torch.backends.cudnn.benchmark is True  # training's setting is back, after an error too


def test_validation_asks_the_dataset_mode_to_check_its_flags(tmp_path, make_options, monkeypatch):
    from data.resize_natural_3_dataset import ResizeNatural3Dataset
    from evaluation.validation import open_validation_set

    calls = []
    monkeypatch.setattr(ResizeNatural3Dataset, "check_test_options",
                        staticmethod(lambda opt, prefix="--": calls.append((opt.align, opt.keep_size, prefix))),
                        raising=False)
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    open_validation_set(make_options("train", "--dataroot", root, "--val_dataroot", root, "--val_align", "8"))
    assert (8, False, "--val_") in calls  # the validation flags, named as validation's
