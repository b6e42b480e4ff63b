"""The real parts, exercised for real: a visdom server, the HTML pages in Chromium, torchrun DDP."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TEST_THREADS, build_tiny_dataset, run_script
from PIL import Image

from util.distributed import weight_difference_in

TRAIN = ["--model", "IBCLN", "--gpu_ids", "-1", "--vgg_weights", "random", "--load_size", "36", "--crop_size", "32",
         "--num_threads", "0", "--seed", "5"]
LOSS_NAMES = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def visdom_server(tmp_path):
    """Start visdom's API server on 127.0.0.1 at a free port (offline: no web assets needed); yield the port."""
    port = free_port()
    code = ("import sys; from visdom.server.run_server import main; sys.argv = ['visdom', '-port', sys.argv[1], "
            "'--hostname', '127.0.0.1', '-bind_local', '-env_path', sys.argv[2], '-logging_level', 'WARNING']; main()")
    log = open(tmp_path / "visdom.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(tmp_path / "visdom_env")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log_text = (tmp_path / "visdom.log").read_text()
                    raise AssertionError("visdom server did not start: " + log_text) from None
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_training_displays_images_and_loss_curves_in_a_real_visdom_server(tmp_path, visdom_server):
    import visdom

    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    env = "ibcln_ci"
    proc = run_script("train.py", "--dataroot", root, "--name", "vis", "--checkpoints_dir", tmp_path / "c", *TRAIN,
                      "--niter", "1", "--dataset_size", "4", "--batch_size", "2", "--display_id", "1",
                      "--display_port", str(visdom_server), "--display_server", "http://127.0.0.1",
                      "--display_env", env, "--display_freq", "1", "--print_freq", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no visdom server" not in proc.stderr
    client = visdom.Visdom(server="http://127.0.0.1", port=visdom_server, env=env, use_incoming_socket=False)
    assert env in client.get_env_list()
    assert client.win_exists("1", env) and client.win_exists("2", env)

    images = json.loads(client.get_window_data("1", env))
    assert images["type"] == "image"
    src = images["content"]["src"]
    grid = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    # rows: T_0..T_3, R_0..R_3, then real_T real_I (padded to 4 columns); 32 px tiles, 2 px padding each side
    assert grid.size == (4 * (32 + 4), 3 * (32 + 4))

    plot = json.loads(client.get_window_data("2", env))
    traces = plot["content"]["data"]
    assert [t["name"] for t in traces] == LOSS_NAMES
    assert all(len(t["x"]) >= 2 and len(t["y"]) == len(t["x"]) for t in traces)


def test_training_without_a_visdom_server_warns_once_and_completes(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    proc = run_script("train.py", "--dataroot", root, "--name", "novis", "--checkpoints_dir", tmp_path / "c", *TRAIN,
                      "--niter", "1", "--dataset_size", "2", "--display_id", "1", "--display_port", str(free_port()),
                      "--display_server", "http://127.0.0.1", "--display_freq", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("no visdom server") == 1
    assert (tmp_path / "c" / "novis" / "final_net_G_T.pth").is_file()


def chromium_driver(tmp_path: Path):
    """Return a headless Chromium driven by selenium through Debian's chromedriver (skip, saying why, if absent)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("Chromium or chromedriver is not installed (.ci/run installs Debian's chromium and "
                    "chromium-driver; it failed or was not run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def check_page(driver, page: Path, screenshot: Path) -> list[list]:
    """Open page, wait for its images, save a screenshot; return [src, naturalWidth] of every <img>."""
    driver.get(page.as_uri())
    deadline = time.time() + 30
    while driver.execute_script("return Array.from(document.images).some(i => !i.complete)") and time.time() < deadline:
        time.sleep(0.2)
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000
    return driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")


def test_result_pages_render_in_headless_chromium(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=2)
    os.rename(root / "testB" / "img1.png", root / "testB" / "img 1 ü.png")
    (root / "testA1" / "img1.png").unlink()  # one image without ground truth: n/a cells
    ckpt = tmp_path / "c"
    proc = run_script("train.py", "--dataroot", root, "--name", "web", "--checkpoints_dir", ckpt, *TRAIN,
                      "--niter", "1", "--dataset_size", "2", "--display_id", "-1", "--display_freq", "1",
                      "--update_html_freq", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_script("test.py", "--dataroot", root, "--name", "web", "--checkpoints_dir", ckpt, "--results_dir",
                      tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    driver = chromium_driver(tmp_path)
    try:
        results = tmp_path / "r" / "web" / "test_final" / "index.html"
        images = check_page(driver, results, tmp_path / "results.png")
        assert len(images) == 18  # 8 thumbnails + 2 comparisons with ground truth, 7 + 1 without (tests/test_pages.py)
        assert all(width > 0 for _, width in images), images
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#metrics tbody tr')).map("
            "r => Array.from(r.cells).map(c => c.textContent))")
        assert [row[0] for row in cells] == ["img 1 ü", "img0", "mean"]  # sorted file names
        for row in (cells[1], cells[2]):
            values = [float(v) for v in row[1:]]
            assert len(values) == 8 and all(v == v for v in values)
            assert all(0 < v < 100 for v in values[0::2]) and all(-1 <= v <= 1 for v in values[1::2])
        assert cells[0][1:] == ["n/a"] * 8

        training = ckpt / "web" / "web" / "index.html"
        images = check_page(driver, training, tmp_path / "training.png")
        assert len(images) == 8 and all(width > 0 for _, width in images), images  # T_0 and R_0 linked, not shown
    finally:
        driver.quit()


def test_torchrun_ddp_two_processes_on_cpu(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=1)
    ckpt = tmp_path / "c"
    env = dict(os.environ, OMP_NUM_THREADS=TEST_THREADS, PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "train.py"), "--dataroot", str(root), "--name", "ddp", "--checkpoints_dir", str(ckpt),
               *TRAIN, "--niter", "1", "--dataset_size", "6", "--batch_size", "1", "--display_id", "-1",
               "--print_freq", "1"]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 6 samples over 2 processes, batch 1: 3 steps each; the weights never drift apart
    assert "DDP: 2 processes" in proc.stdout and weight_difference_in(proc.stdout) == 0  # ranks in sync
    log = (ckpt / "ddp" / "loss_log.txt").read_text()
    assert log.count("Training Loss") == 1 and log.count("(epoch: ") == 3  # rank 0 alone writes
    assert proc.stdout.count("----------------- Options") == 1
    names = sorted(p.name for p in (ckpt / "ddp").glob("*.pth"))
    assert names == sorted(f"{p}_{n}.pth" for p in ("final", "latest")
                           for n in ("net_D", "net_G_R", "net_G_T", "train_state"))
    import torch

    state = torch.load(ckpt / "ddp" / "final_net_G_T.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    proc = run_script("test.py", "--dataroot", root, "--name", "ddp", "--checkpoints_dir", ckpt, "--results_dir",
                      tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "r" / "ddp" / "test_final" / "images" / "img0_fake_Ts_03.png").is_file()
