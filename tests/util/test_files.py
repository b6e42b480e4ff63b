"""Saving files safely (util/files.py, util/images.py): a failed or killed save keeps the previous file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, load_state

from util.errors import UserError
from util.files import atomic_torch_save


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


@pytest.mark.slow
def test_killed_save_keeps_the_previous_checkpoint(tmp_path):
    """SIGKILL a process in the middle of writing a large checkpoint: the old file still loads."""
    path = tmp_path / "latest_net_D.pth"
    atomic_torch_save({"w": torch.ones(3)}, str(path))
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); from util.files import atomic_torch_save; "
            "print('start', flush=True); "
            "atomic_torch_save({'w': torch.randn(64, 1024, 1024)}, sys.argv[1]); print('done', flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".tmp_") for p in tmp_path.iterdir()):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert torch.equal(load_state(path)["w"], torch.ones(3))


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
