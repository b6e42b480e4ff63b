"""train.py run as a user runs it, on tiny data: checkpoints, logs, pages and metrics of a run and of test.py after it,
resume, signals, fine-tuning, bad input as one-line errors, torchrun. Every test here starts train.py (the slow
tier)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    REPO_ROOT,
    TINY_TRAIN_FLAGS,
    TORCHRUN,
    assert_one_line_error,
    build_tiny_dataset,
    load_state,
    parse_options,
    run_script,
    script_env,
    signal_at,
    skimage_photo,
    start_training,
    write_png,
)
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from models.networks import ConvLSTMGenerator, NLayerDiscriminator
from util.distributed import weight_difference_in

pytestmark = pytest.mark.slow

VISUALS = ["fake_Ts_00", "fake_Ts_01", "fake_Ts_02", "fake_Ts_03", "real_T_00", "real_I_00",
           "fake_Rs_00", "fake_Rs_01", "fake_Rs_02", "fake_Rs_03"]


def make_tiny_root(root: Path) -> Path:
    """Write trainA1/trainA2 (48x40 photos) and testB/testA1 (one pair + one input without ground truth)."""
    for sub in ("trainA1", "trainA2", "testA1", "testB"):
        (root / sub).mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee"):
        write_png(skimage_photo(name, (40, 48)), root / "trainA1" / f"{name}.png")
    for name in ("rocket", "camera", "coins"):
        write_png(skimage_photo(name, (44, 44)), root / "trainA2" / f"{name}.png")
    t = skimage_photo("hubble_deep_field", (36, 40)).astype(np.float64)
    r = skimage_photo("moon", (36, 40)).astype(np.float64)
    Image.fromarray(t.astype(np.uint8)).save(root / "testA1" / "pair one.png")
    Image.fromarray((0.75 * t + 0.25 * r).astype(np.uint8)).save(root / "testB" / "pair one.png")
    write_png(skimage_photo("coffee", (40, 36)), root / "testB" / "no_gt.png")
    return root


def run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run train.py or test.py from the repository root and return the finished process, asserting success."""
    proc = run_script(script, *args, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    """Return train.py flags for a 2-iterations-per-epoch CPU run at 32x32."""
    return ["--dataroot", str(root), "--name", name, "--model", "IBCLN", "--checkpoints_dir", str(ckpt),
            "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random", "--dataset_size", "4",
            "--batch_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0", "--seed", "7",
            "--print_freq", "2", "--display_freq", "2", "--update_html_freq", "2", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Train 2 epochs x 2 iterations, then test; return the folders."""
    base = tmp_path_factory.mktemp("e2e")
    root = make_tiny_root(base / "data")
    ckpt, results = base / "checkpoints", base / "results"
    train = run("train.py", *train_args(root, ckpt, "tiny", "--niter", "2", "--save_epoch_freq", "1"))
    test = run("test.py", "--dataroot", str(root), "--name", "tiny", "--model", "IBCLN", "--checkpoints_dir",
               str(ckpt), "--results_dir", str(results), "--gpu_ids", "-1", "--epoch", "final")
    return {"root": root, "ckpt": ckpt / "tiny", "web": results / "tiny" / "test_final",
            "train_out": train.stdout, "test_out": test.stdout, "base": base}


def test_training_writes_checkpoints_logs_and_snapshots(trained):
    ckpt = trained["ckpt"]
    for prefix in ("1", "2", "latest", "final"):
        for net in ("G_T", "G_R", "D"):
            assert (ckpt / f"{prefix}_net_{net}.pth").is_file(), f"{prefix}_net_{net}.pth missing"
        assert (ckpt / f"{prefix}_train_state.pth").is_file()
    log = (ckpt / "loss_log.txt").read_text()
    assert log.count("(epoch: ") == 4  # print_freq 2 samples, 4 samples per epoch, 2 epochs
    for name in ("idt_T", "res", "MP", "G:", "T:", "idt_R", "R:", "D:"):
        assert name in log
    page = (ckpt / "web" / "index.html").read_text()
    for epoch in (1, 2):
        for label in VISUALS:
            assert f"images/epoch{epoch:03d}_{label}.png" in page
            assert (ckpt / "web" / "images" / f"epoch{epoch:03d}_{label}.png").is_file()
    assert (ckpt / "train_opt.txt").read_text().count("[default:") >= 5


def test_results_page_lists_every_image_and_the_metrics_table(trained):
    web = trained["web"]
    page = (web / "index.html").read_text()
    assert '<table border="1" id="metrics"' in page or 'id="metrics"' in page
    assert page.index('id="metrics"') < page.index("<img")  # the table comes first
    for stem in ("pair one", "no_gt"):
        for label in VISUALS:
            file = web / "images" / f"{stem}_{label}.png"
            assert file.is_file(), file
            assert f"images/{stem.replace(' ', '%20')}_{label}.png" in page
    assert "n/a" in page
    assert "results page:" in trained["test_out"] and "PSNR_T_3" in trained["test_out"]


def test_metrics_csv_equals_skimage_on_the_saved_pngs(trained):
    web = trained["web"]
    with open(web / "metrics.csv", newline="") as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"pair one", "no_gt", "mean"}
    assert all(v == "n/a" for k, v in rows["no_gt"].items() if k != "image")
    gt = np.asarray(Image.open(web / "images" / "pair one_real_T_00.png"))
    for column, label in (("I", "real_I_00"), ("T_1", "fake_Ts_01"), ("T_2", "fake_Ts_02"), ("T_3", "fake_Ts_03")):
        pred = np.asarray(Image.open(web / "images" / f"pair one_{label}.png"))
        # band-wise PSNR: per RGB channel, then the mean of the three values (docs/evaluation.md, 'Metric protocol')
        psnr = np.mean([peak_signal_noise_ratio(gt[..., c], pred[..., c], data_range=255) for c in range(3)])
        ssim = structural_similarity(gt, pred, data_range=255, channel_axis=2)
        assert float(rows["pair one"][f"PSNR_{column}"]) == pytest.approx(psnr, abs=1e-9)
        assert float(rows["pair one"][f"SSIM_{column}"]) == pytest.approx(ssim, abs=1e-9)
        assert float(rows["mean"][f"PSNR_{column}"]) == pytest.approx(psnr, abs=1e-9)  # one image with ground truth
    real_i = np.asarray(Image.open(trained["root"] / "testB" / "pair one.png"))[:36, :40]
    assert np.array_equal(np.asarray(Image.open(web / "images" / "pair one_real_I_00.png")), real_i)


def test_resume_from_the_last_checkpoint_gives_identical_weights(trained, tmp_path):
    """A run killed during epoch 2 and resumed from its epoch-1 checkpoint ends like the uninterrupted run."""
    ckpt = tmp_path / "checkpoints"
    (ckpt / "tiny").mkdir(parents=True)
    for file in trained["ckpt"].glob("1_*.pth"):
        shutil.copy(file, ckpt / "tiny" / file.name)
    out = run("train.py", *train_args(trained["root"], ckpt, "tiny", "--niter", "2", "--save_epoch_freq", "1",
                                      "--continue_train", "--epoch", "1")).stdout
    assert "resuming after epoch 1" in out
    for net in ("G_T", "G_R", "D"):
        uninterrupted = load_state(trained["ckpt"] / f"final_net_{net}.pth")
        resumed = load_state(ckpt / "tiny" / f"final_net_{net}.pth")
        assert uninterrupted.keys() == resumed.keys()
        for key in uninterrupted:
            assert torch.equal(uninterrupted[key], resumed[key]), f"{net} {key} differs after resume"
    # and the resumed weights did move during epoch 2
    epoch1 = load_state(trained["ckpt"] / "1_net_G_T.pth")
    assert not torch.equal(epoch1["conv1.0.weight"], load_state(ckpt / "tiny" / "final_net_G_T.pth")["conv1.0.weight"])


# ----- signals ----------------------------------------------------------------------------------------------------

def test_sigterm_saves_latest_and_exits_143(tmp_path):
    proc = start_training(build_tiny_dataset(tmp_path / "d", n_test=0), tmp_path / "c", "term", "--niter", "50")
    output = signal_at(proc, lambda line: "end of epoch 1 /" in line, signal.SIGTERM)
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
    proc = start_training(build_tiny_dataset(tmp_path / "d", n_test=0), tmp_path / "c", "group", "--dataset_size",
                          "400", "--print_freq", "2", start_new_session=True)
    workers = []

    def mid_epoch(line: str) -> bool:  # the workers are running: note them before the signal
        if line.startswith("(epoch: 1, iters:"):
            workers.extend(subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True,
                                          text=True).stdout.split())
            return True
        return False

    output = signal_at(proc, mid_epoch, signal.SIGTERM, group=True)
    assert len(workers) >= 2, output[-3000:]
    assert proc.returncode == 143, output[-3000:]
    assert "terminated (SIGTERM): saving 'latest'" in output
    assert "Traceback" not in output and "killed by signal" not in output
    assert torch.load(tmp_path / "c" / "group" / "latest_train_state.pth", weights_only=True)["epoch"] == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # no worker left behind


# ----- new runs, fine-tuning, logs ----------------------------------------------------------------------------------

def test_a_new_run_over_an_existing_one_is_refused(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    ckpt = tmp_path / "c" / "exp"
    ckpt.mkdir(parents=True)
    (ckpt / "latest_net_G_T.pth").write_bytes(b"precious")
    args = ["--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS]
    line = assert_one_line_error(run_script("train.py", *args), status=2)
    assert "already holds checkpoints" in line and "--continue_train" in line and "--overwrite" in line
    assert (ckpt / "latest_net_G_T.pth").read_bytes() == b"precious"
    assert not (ckpt / "train_opt.txt").exists()
    parse_options("train", [*args, "--continue_train"], save=True)  # resuming is allowed
    parse_options("train", [*args, "--overwrite"], save=True)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> dict:
    """Fine-tune 2 epochs from generator-only weights (lr 0) with --save_epoch_freq 0, stdout a pipe."""
    base = tmp_path_factory.mktemp("finetune")
    root = build_tiny_dataset(base / "d", n_test=0)
    released = base / "released"
    released.mkdir()
    torch.manual_seed(4)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), released / f"final_net_{name}.pth")
    proc = run_script("train.py", "--dataroot", root, "--name", "ft", "--checkpoints_dir", base / "c",
                      *TINY_TRAIN_FLAGS, "--pretrained_dir", released, "--epoch", "final", "--lr", "0", "--niter", "2",
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
    line = assert_one_line_error(run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c",
                                            *TINY_TRAIN_FLAGS, "--pretrained_dir", tmp_path / "released"), status=2)
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


# ----- bad input: one-line errors, skipped images, a NaN loss -----------------------------------------------------

@pytest.mark.parametrize("missing", ["trainA1", "trainA2"])
def test_missing_or_empty_training_folder(tmp_path, missing):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    for f in (root / missing).iterdir():
        f.unlink()
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS)
    assert_one_line_error(proc, missing, "no images")
    (root / missing).rmdir()
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS)
    assert_one_line_error(proc, missing, "not found", "must contain")


def test_unpaired_natural_names(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", natural=2, n_test=0)
    os.rename(root / "natural_I" / "n1.png", root / "natural_I" / "other.png")
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS)
    assert_one_line_error(proc, "n1.png", "other.png")


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    ckpt = tmp_path / "c" / "exp"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    gen = ConvLSTMGenerator()
    broken = gen.state_dict()
    broken["output.0.bias"] = torch.full((3,), float("nan"))
    torch.save(broken, ckpt / "latest_net_G_T.pth")
    torch.save(ConvLSTMGenerator().state_dict(), ckpt / "latest_net_G_R.pth")
    torch.save(NLayerDiscriminator().state_dict(), ckpt / "latest_net_D.pth")
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    proc = run_script("train.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      *TINY_TRAIN_FLAGS, "--continue_train")
    line = assert_one_line_error(proc, "loss idt_T is nan", "epoch 1", "sample 2", "intact")
    assert "training stopped" in line
    after = {p.name: p.read_bytes() for p in ckpt.glob("*.pth")}
    assert after == before


@pytest.mark.parametrize("workers", ["0", "2"])
def test_undecodable_training_images_are_skipped_then_bounded(tmp_path, workers):
    """One warning per bad file and run (2 epochs: DataLoader workers are re-created for each), then the 10% limit."""
    root = build_tiny_dataset(tmp_path / "d", n_train=12, n_reflection=8, n_test=0)
    (root / "trainA1" / "t0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    flags = [*TINY_TRAIN_FLAGS, "--dataset_size", "4", "--serial_batches", "--num_threads", workers, "--overwrite"]
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *flags, "--niter", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipping a training image") == 1 and "t0.png" in proc.stderr
    for name in ("t1.png", "t10.png", "t11.png"):  # sorted after t0: sample 0 meets all of them, whoever loads it
        (root / "trainA1" / name).write_text("not an image")
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *flags)
    assert_one_line_error(proc, "cannot be decoded", "more than 10%")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_always_rejected_photo_is_skipped_with_one_warning_per_run(tmp_path, workers):
    root = build_tiny_dataset(tmp_path / "d", n_train=8, n_reflection=3, n_test=0)
    write_png(np.full((72, 72, 3), 8, np.uint8), root / "trainA1" / "a_dark.png")  # first in sorted order
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS,
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
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TINY_TRAIN_FLAGS,
                      "--natural_prob", "1", "--num_threads", "1")
    line = assert_one_line_error(proc, status=2)
    assert line.startswith("error: real pair of different sizes") and "n0.png" in line
    assert "DataLoader worker" not in proc.stderr


# ----- torchrun -------------------------------------------------------------------------------------------------

DDP_TRAIN = ["--model", "IBCLN", "--gpu_ids", "-1", "--vgg_weights", "random", "--load_size", "36", "--crop_size",
             "32", "--num_threads", "0", "--seed", "5"]


def test_torchrun_ddp_two_processes_on_cpu(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=1)
    ckpt = tmp_path / "c"
    command = [*TORCHRUN,
               str(REPO_ROOT / "train.py"), "--dataroot", str(root), "--name", "ddp", "--checkpoints_dir", str(ckpt),
               *DDP_TRAIN, "--niter", "1", "--dataset_size", "6", "--batch_size", "1", "--display_id", "-1",
               "--print_freq", "1"]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 6 samples over 2 processes, batch 1: 3 steps each; the weights never drift apart
    assert "DDP: 2 processes" in proc.stdout and weight_difference_in(proc.stdout) == 0  # ranks in sync
    log = (ckpt / "ddp" / "loss_log.txt").read_text()
    assert log.count("Training Loss") == 1 and log.count("(epoch: ") == 3  # rank 0 alone writes
    assert proc.stdout.count("----------------- Options") == 1
    names = sorted(p.name for p in (ckpt / "ddp").glob("*.pth"))
    assert names == sorted(f"{p}_{n}.pth" for p in ("final", "latest")
                           for n in ("net_D", "net_G_R", "net_G_T", "train_state"))
    state = torch.load(ckpt / "ddp" / "final_net_G_T.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    proc = run_script("test.py", "--dataroot", root, "--name", "ddp", "--checkpoints_dir", ckpt, "--results_dir",
                      tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "r" / "ddp" / "test_final" / "images" / "img0_fake_Ts_03.png").is_file()
