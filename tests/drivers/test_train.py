"""End-to-end runs of train.py and test.py on tiny data: pages, metrics, exact resume, safe saves."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from util.files import atomic_torch_save

REPO = Path(__file__).resolve().parents[1]
VISUALS = ["fake_Ts_00", "fake_Ts_01", "fake_Ts_02", "fake_Ts_03", "real_T_00", "real_I_00",
           "fake_Rs_00", "fake_Rs_01", "fake_Rs_02", "fake_Rs_03"]


def _photo(name: str, size: tuple[int, int]) -> np.ndarray:
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.asarray(Image.fromarray(img[..., :3]).resize(size, Image.BICUBIC))


def make_tiny_root(root: Path) -> Path:
    """Write trainA1/trainA2 (48x40 photos) and testB/testA1 (one pair + one input without ground truth)."""
    for sub in ("trainA1", "trainA2", "testA1", "testB"):
        (root / sub).mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(_photo(name, (48, 40))).save(root / "trainA1" / f"{name}.png")
    for name in ("rocket", "camera", "coins"):
        Image.fromarray(_photo(name, (44, 44))).save(root / "trainA2" / f"{name}.png")
    t = _photo("hubble_deep_field", (40, 36)).astype(np.float64)
    r = _photo("moon", (40, 36)).astype(np.float64)
    Image.fromarray(t.astype(np.uint8)).save(root / "testA1" / "pair one.png")
    Image.fromarray((0.75 * t + 0.25 * r).astype(np.uint8)).save(root / "testB" / "pair one.png")
    Image.fromarray(_photo("coffee", (36, 40))).save(root / "testB" / "no_gt.png")
    return root


def run(script: str, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run train.py or test.py from the repository root and return the finished process."""
    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    """Return train.py flags for a 2-iterations-per-epoch CPU run at 32x32."""
    return ["--dataroot", str(root), "--name", name, "--model", "IBCLN", "--checkpoints_dir", str(ckpt),
            "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random", "--dataset_size", "4",
            "--batch_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0", "--seed", "7",
            "--print_freq", "2", "--display_freq", "2", "--update_html_freq", "2", *extra]


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Return a saved state_dict, loaded the safe way."""
    return torch.load(path, map_location="cpu", weights_only=True)


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
        # band-wise PSNR: per RGB channel, then the mean of the three values (README, metric protocol)
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


class Unpicklable:
    """An object whose pickling fails halfway through a save."""

    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "latest_net_G_T.pth"
    atomic_torch_save({"w": torch.arange(4.0)}, str(path))
    with pytest.raises(RuntimeError, match="simulated"):
        atomic_torch_save({"w": torch.zeros(1000), "bad": Unpicklable()}, str(path))
    assert torch.equal(load_state(path)["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_net_G_T.pth"]


def test_killed_save_keeps_the_previous_checkpoint(tmp_path):
    """SIGKILL a process in the middle of writing a large checkpoint: the old file still loads."""
    path = tmp_path / "latest_net_D.pth"
    atomic_torch_save({"w": torch.ones(3)}, str(path))
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); from util.files import atomic_torch_save; "
            "print('start', flush=True); "
            "atomic_torch_save({'w': torch.randn(64, 1024, 1024)}, sys.argv[1]); print('done', flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(REPO)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".tmp_") for p in tmp_path.iterdir()):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert torch.equal(load_state(path)["w"], torch.ones(3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_display_without_server_warns_once_and_training_completes(tmp_path):
    root = make_tiny_root(tmp_path / "data")
    args = train_args(root, tmp_path / "ckpt", "novis", "--niter", "1")
    args[args.index("--display_id") + 1] = "1"
    proc = run("train.py", *args, "--display_port", str(_free_port()), "--display_server", "http://127.0.0.1")
    assert proc.stderr.count("no visdom server") == 1
    assert (tmp_path / "ckpt" / "novis" / "final_net_G_T.pth").is_file()


def test_ctrl_c_saves_latest(tmp_path):
    root = make_tiny_root(tmp_path / "data")
    args = train_args(root, tmp_path / "ckpt", "intr", "--niter", "50", "--save_latest_freq", "100000")
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "end of epoch 1 /" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output[-2000:]
    assert "interrupted: saving 'latest'" in output
    state = torch.load(tmp_path / "ckpt" / "intr" / "latest_train_state.pth", weights_only=True)
    assert state["epoch"] >= 1
    assert os.path.isfile(tmp_path / "ckpt" / "intr" / "latest_net_G_R.pth")
