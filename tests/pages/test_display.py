"""The display of a training run (pages/display.py): images and loss curves in a real visdom server, one warning
without a server, and the cascade's grid as the trackers get it."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers import build_tiny_dataset, free_port, run_script
from PIL import Image

from models.ibcln_model import ROLES
from pages.display import page_grid

TRAIN = ["--model", "IBCLN", "--gpu_ids", "-1", "--vgg_weights", "random", "--load_size", "36", "--crop_size", "32",
         "--num_threads", "0", "--seed", "5"]
LOSS_NAMES = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_training_without_a_visdom_server_warns_once_and_completes(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    proc = run_script("train.py", "--dataroot", root, "--name", "novis", "--checkpoints_dir", tmp_path / "c", *TRAIN,
                      "--niter", "1", "--dataset_size", "2", "--display_id", "1", "--display_port", str(free_port()),
                      "--display_server", "http://127.0.0.1", "--display_freq", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("no visdom server") == 1
    assert (tmp_path / "c" / "novis" / "final_net_G_T.pth").is_file()


def test_page_grid_lays_the_cascade_out_as_the_result_page():
    colours = {"real_I": 10, "fake_Ts": [20, 21, 22, 23], "fake_Rs": [30, 31, 32, 33], "real_T": 40}
    visuals = OrderedDict((name, [torch.full((1, 3, 4, 6), v / 255) for v in value] if isinstance(value, list)
                           else torch.full((1, 3, 4, 6), value / 255)) for name, value in colours.items())
    grid = page_grid(visuals, ROLES, gap=2)
    assert grid.shape == (2 * 4 + 2, 5 * 6 + 4 * 2, 3) and grid.dtype == np.uint8
    cells = [[int(grid[r * 6, c * 8, 0]) for c in range(5)] for r in range(2)]
    # T row: I, T_1..T_3, ground truth; R row: R_1..R_3 under T_1..T_3; T_0 and R_0 (hidden) nowhere.
    assert cells == [[10, 21, 22, 23, 40], [255, 31, 32, 33, 255]]
    assert (grid[4:6] == 255).all() and (grid[:, 6:8] == 255).all()  # the gaps
