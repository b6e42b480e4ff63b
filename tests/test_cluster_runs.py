"""Real data sets and real clusters: nested folders, unused photos, signals, ranks, disks, logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TEST_THREADS, build_tiny_dataset, parse_options, run_script, skimage_photo, write_png

from util.errors import UserError

TRAIN_FLAGS = ["--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random",
               "--dataset_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0",
               "--niter", "1", "--seed", "3"]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Return the single 'error: ...' line of a failed run, asserting there is no traceback."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def train_opt(root: Path, tmp_path: Path, *args: str):
    """Return training options for root (CPU, random VGG, no workers unless args say otherwise)."""
    return parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c",
                                   "--vgg_weights", "random", "--num_threads", "0", "--load_size", "36",
                                   "--crop_size", "32", "--seed", "5", *args])


# ----- 1. folders are walked recursively ---------------------------------------------------------------------
def test_images_in_sub_folders_are_listed_sorted_and_counted(tmp_path, capsys):
    from data.image_folder import make_dataset
    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    root = build_tiny_dataset(tmp_path / "d", n_train=2, n_test=0)
    photo = skimage_photo("astronaut", (40, 40))
    for rel in ("2008/b.png", "2008/a.jpg", "2007/deep/c.png"):
        write_png(photo, root / "trainA1" / rel)
    (root / "trainA1" / "2007" / "deep" / "loop").symlink_to(root / "trainA1", target_is_directory=True)
    paths = make_dataset(str(root / "trainA1"))
    rel = [os.path.relpath(p, root / "trainA1") for p in paths]
    assert rel == ["2007/deep/c.png", "2008/a.jpg", "2008/b.png", "t0.png", "t1.png"]  # the loop is read once
    ResizeNatural3Dataset(train_opt(root, tmp_path))
    out = capsys.readouterr().out
    assert f"{root / 'trainA1'}: 5 image(s) in 3 folder(s): . 2, 2007/deep 1, 2008 2" in out
    assert f"{root / 'trainA2'}: 2 image(s)\n" in out


# ----- 2. photos beyond --dataset_size ------------------------------------------------------------------------
def test_unused_photos_are_noted_and_uniform_sampling_reaches_them(tmp_path, capsys):
    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    root = build_tiny_dataset(tmp_path / "d", n_train=6, n_test=0)
    dataset = ResizeNatural3Dataset(train_opt(root, tmp_path, "--dataset_size", "2"))
    assert "the last 4 are never used; --t_sampling uniform" in capsys.readouterr().out
    assert {os.path.basename(dataset[i % 2]["T_path"]) for i in range(8)} == {"t0.png", "t1.png"}

    def names(seed: int) -> list[str]:
        dataset = ResizeNatural3Dataset(train_opt(root, tmp_path, "--dataset_size", "2", "--t_sampling", "uniform"))
        torch.manual_seed(seed)
        return [os.path.basename(dataset[i % 2]["T_path"]) for i in range(24)]

    first = names(11)
    assert "never used" not in capsys.readouterr().out
    assert set(first) == {f"t{k}.png" for k in range(6)}
    assert names(11) == first and names(12) != first  # reproducible under the seed


# ----- 4, 5. a photo that is always rejected; bad files counted once per run, with workers ------------------
@pytest.mark.parametrize("workers", ["0", "2"])
def test_always_rejected_photo_is_skipped_with_one_warning_per_run(tmp_path, workers):
    root = build_tiny_dataset(tmp_path / "d", n_train=8, n_reflection=3, n_test=0)
    write_png(np.full((72, 72, 3), 8, np.uint8), root / "trainA1" / "a_dark.png")  # first in sorted order
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS,
                      "--serial_batches", "--niter", "2", "--num_threads", workers)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "skipping a training image" in line]
    assert len(warnings) == 1 and "a_dark.png" in warnings[0] and "no usable mixture" in warnings[0], proc.stderr
    # A warning is one line in the user's terms: no Python file:line prefix, no source line under it.
    assert warnings[0].startswith("warning: skipping a training image: ") and "Warning:" not in proc.stderr
    assert "note(" not in proc.stderr and ".py:" not in proc.stderr


def test_error_in_a_worker_is_one_line(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0, natural=1)
    write_png(skimage_photo("coffee", (60, 72)), root / "natural_I" / "n0.png")  # T is 72x72
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS,
                      "--natural_prob", "1", "--num_threads", "1")
    line = one_error_line(proc)
    assert line.startswith("error: real pair of different sizes") and "n0.png" in line
    assert "DataLoader worker" not in proc.stderr


# ----- 6. SIGTERM -----------------------------------------------------------------------------------------------
def start_training(tmp_path: Path, name: str, *args: str, **popen_kwargs) -> subprocess.Popen:
    """Return a running train.py on a tiny dataset (checkpoints in tmp_path/c), its output on proc.stdout."""
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    env = dict(os.environ, OMP_NUM_THREADS=TEST_THREADS, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), "--dataroot", str(root), "--name", name,
                             "--checkpoints_dir", str(tmp_path / "c"), *TRAIN_FLAGS, "--num_threads", "2",
                             "--save_latest_freq", "100000", *args],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen_kwargs)


def test_sigterm_saves_latest_and_exits_143(tmp_path):
    proc = start_training(tmp_path, "term", "--niter", "50")
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "end of epoch 1 /" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=300)
    output = "".join(lines) + rest
    assert proc.returncode == 143, output[-3000:]
    assert "terminated (SIGTERM): saving 'latest'" in output and "Traceback" not in output
    ckpt = tmp_path / "c" / "term"
    state = torch.load(ckpt / "latest_train_state.pth", weights_only=True)
    assert state["epoch"] >= 1
    for net in ("G_T", "G_R", "D"):
        assert torch.load(ckpt / f"latest_net_{net}.pth", weights_only=True)
    assert not list(ckpt.glob(".tmp_*"))
    assert not (ckpt / "train.lock").exists()  # released on the way out


def test_sigterm_to_the_whole_process_group_reaches_workers_too_and_still_saves_latest(tmp_path):
    # SLURM and `kill -- -PGID` signal the DataLoader workers at the same moment as the main process.
    proc = start_training(tmp_path, "group", "--dataset_size", "400", "--print_freq", "2", start_new_session=True)
    lines, workers = [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("(epoch: 1, iters:"):  # mid-epoch: the workers are running
            workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True,
                                     text=True).stdout.split()
            os.killpg(proc.pid, signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=300)
    output = "".join(lines) + rest
    assert len(workers) >= 2, output[-3000:]
    assert proc.returncode == 143, output[-3000:]
    assert "terminated (SIGTERM): saving 'latest'" in output
    assert "Traceback" not in output and "killed by signal" not in output
    assert torch.load(tmp_path / "c" / "group" / "latest_train_state.pth", weights_only=True)["epoch"] == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # no worker left behind


# ----- 7. resume under torchrun ---------------------------------------------------------------------------------
RESUME_SCRIPT = """
import sys
import torch
from data import create_dataset
from options.model_config import create_model
from options.train_options import TrainOptions
from util import distributed
from models import checkpoint

opt = TrainOptions().parse(sys.argv[1:], save=False)
distributed.setup(opt)
model = create_model(opt)
checkpoint.load_for_run(model, opt)
model.setup(opt.verbose)
checkpoint.resume(model, opt)
sample = create_dataset(opt).dataset[0]
draws = torch.rand(3).tolist() + [float(sample["I"].sum())]
mean = float(distributed.mean_over_ranks(torch.tensor([float(opt.rank)]))[0])
print(f"rank {opt.rank} draws {draws} mean {mean}", flush=True)
distributed.barrier()  # both ranks done before either tears down gloo (a rank leaving early can abort the other)
distributed.cleanup()
"""


def test_ranks_draw_different_samples_after_a_torchrun_resume(tmp_path):
    from models import checkpoint
    from options.model_config import create_model

    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    args = ["--dataroot", str(root), "--name", "ddp", "--checkpoints_dir", str(tmp_path / "c"), *TRAIN_FLAGS]
    model = create_model(parse_options("train", args))
    model.setup()
    checkpoint.save(model, "latest", 1, 2)
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS=TEST_THREADS, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), *args, "--continue_train"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("rank "):
            rank, rest = line[5:].split(" draws ")
            draws, mean = rest.split(" mean ")
            found[int(rank)] = (draws, float(mean))
    assert sorted(found) == [0, 1], proc.stdout[-3000:]
    assert found[0][0] != found[1][0]  # random draws and the first sample differ between the ranks
    assert found[0][1] == found[1][1] == 0.5  # logged losses are averaged over the ranks


# ----- 8. read-only checkpoints, failed saves ---------------------------------------------------------------
def test_testing_writes_nothing_into_the_checkpoint_folder(tmp_path):
    from models.networks import ConvLSTMGenerator

    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    ckpt = tmp_path / "c" / "shared"
    ckpt.mkdir(parents=True)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"final_net_{name}.pth")
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    proc = run_script("test.py", "--dataroot", root, "--name", "shared", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before
    assert "dataroot" in (tmp_path / "r" / "shared" / "test_final" / "test_opt.txt").read_text()


@pytest.mark.parametrize("where", ["write", "fsync", "mkstemp"])
def test_a_failed_save_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, where):
    import errno
    import tempfile

    from util import files, images

    path = tmp_path / "latest_net_G_T.pth"
    files.atomic_torch_save({"w": torch.arange(3.0)}, str(path))
    png = tmp_path / "x.png"
    images.save_image(np.zeros((4, 4, 3), np.uint8), str(png))
    old_png = png.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC if where != "mkstemp" else errno.EROFS, os.strerror(errno.ENOSPC)
                      if where != "mkstemp" else os.strerror(errno.EROFS))

    if where == "write":
        monkeypatch.setattr(torch, "save", fail)
        monkeypatch.setattr(images.Image.Image, "save", fail)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    with pytest.raises(UserError, match=r"latest_net_G_T\.pth: cannot be saved \((No space left|Read-only)") as err:
        files.atomic_torch_save({"w": torch.zeros(100)}, str(path))
    assert "\n" not in str(err.value)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3.0))
    if where != "fsync":  # images are not synced to disk
        with pytest.raises(UserError, match=r"x\.png: cannot be saved"):
            images.save_image(np.full((4, 4, 3), 255, np.uint8), str(png))
    assert png.read_bytes() == old_png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_net_G_T.pth", "x.png"]


# ----- 9, 10, 11, 14: options and logs ------------------------------------------------------------------------
def test_a_new_run_over_an_existing_one_is_refused(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    ckpt = tmp_path / "c" / "exp"
    ckpt.mkdir(parents=True)
    (ckpt / "latest_net_G_T.pth").write_bytes(b"precious")
    args = ["--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS]
    line = one_error_line(run_script("train.py", *args))
    assert "already holds checkpoints" in line and "--continue_train" in line and "--overwrite" in line
    assert (ckpt / "latest_net_G_T.pth").read_bytes() == b"precious"
    assert not (ckpt / "train_opt.txt").exists()
    parse_options("train", [*args, "--continue_train"], save=True)  # resuming is allowed
    parse_options("train", [*args, "--overwrite"], save=True)


@pytest.mark.parametrize("flag", ["--aspect_ratio", "--display_ncols"])
def test_ignored_options_are_gone(tmp_path, flag):
    phase = "test" if flag == "--aspect_ratio" else "train"
    with pytest.raises(SystemExit):
        parse_options(phase, ["--dataroot", tmp_path, "--gpu_ids", "-1", flag, "2"])


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> dict:
    """Fine-tune 2 epochs from generator-only weights (lr 0) with --save_epoch_freq 0, stdout a pipe."""
    from models.networks import ConvLSTMGenerator

    base = tmp_path_factory.mktemp("finetune")
    root = build_tiny_dataset(base / "d", n_test=0)
    released = base / "released"
    released.mkdir()
    torch.manual_seed(4)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), released / f"final_net_{name}.pth")
    proc = run_script("train.py", "--dataroot", root, "--name", "ft", "--checkpoints_dir", base / "c", *TRAIN_FLAGS,
                      "--pretrained_dir", released, "--epoch", "final", "--lr", "0", "--niter", "2",
                      "--save_epoch_freq", "0", "--dataset_size", "8", "--batch_size", "2", "--print_freq", "4")
    return {"proc": proc, "released": released, "ckpt": base / "c" / "ft"}


def test_fine_tuning_starts_from_generator_only_weights(fine_tuned):
    proc = fine_tuned["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "D starts from a fresh initialisation" in proc.stdout
    for name in ("G_T", "G_R"):
        given = torch.load(fine_tuned["released"] / f"final_net_{name}.pth", weights_only=True)
        final = torch.load(fine_tuned["ckpt"] / f"final_net_{name}.pth", weights_only=True)
        assert all(torch.equal(given[k], final[k]) for k in given)  # lr 0: the weights are the given ones


def test_pretrained_dir_without_generators_is_one_line(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    (tmp_path / "released").mkdir()
    line = one_error_line(run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c",
                                     *TRAIN_FLAGS, "--pretrained_dir", tmp_path / "released"))
    assert "latest_net_G_T.pth" in line and "present" in line


def test_save_epoch_freq_0_saves_no_epoch_checkpoint(fine_tuned):
    assert fine_tuned["proc"].returncode == 0, fine_tuned["proc"].stderr[-3000:]
    prefixes = {p.name.split("_net_")[0] for p in fine_tuned["ckpt"].glob("*_net_*.pth")}
    assert prefixes == {"latest", "final"}


def test_log_without_terminal_has_print_lines_with_eta_and_no_bar(fine_tuned):
    proc = fine_tuned["proc"]
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("(epoch: ")]
    assert len(lines) == 4, proc.stdout  # 8 samples per epoch, --print_freq 4, 2 epochs
    assert all(" eta: 0:" in line for line in lines)
    log = (fine_tuned["ckpt"] / "loss_log.txt").read_text()
    assert log.count("(epoch: ") == 4


def test_losses_in_the_log_are_averaged_since_the_last_line():
    from training.loop import LossMeter

    meter = LossMeter(samples_to_do=8)
    for value in (1.0, 2.0, 6.0):
        meter.add(torch.tensor([value, 2 * value]), batch=2)
    assert meter.pop_means().tolist() == [3.0, 6.0]
    meter.add(torch.tensor([5.0, 1.0]), batch=2)
    assert meter.pop_means().tolist() == [5.0, 1.0]
    assert meter.samples_done == 8 and meter.eta() == "0:00:00"


# ----- 12. metrics.csv survives an interruption -----------------------------------------------------------
def test_interrupted_test_run_keeps_the_rows_of_the_images_done(tmp_path, make_options):
    import csv

    from evaluation.testing import load_test_model, test_model

    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=3)
    ckpt = tmp_path / "checkpoints" / "exp"
    ckpt.mkdir(parents=True)
    from models.networks import ConvLSTMGenerator

    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"final_net_{name}.pth")
    opt = make_options("test", "--dataroot", root, "--name", "exp", "--epoch", "final")
    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    class Interrupted(ResizeNatural3Dataset):
        def __getitem__(self, index):
            if index == 1:
                raise KeyboardInterrupt
            return super().__getitem__(index)

    model = load_test_model(opt)
    web = tmp_path / "web"
    with pytest.raises(SystemExit) as stop:
        test_model(opt, model, Interrupted(opt), str(web), progress=False)
    assert stop.value.code == 130
    with open(web / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["img0"]
    assert "img0" in (web / "index.html").read_text(encoding="utf-8")
