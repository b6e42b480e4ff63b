"""scripts/get_weights.py: unpack a local archive, verify both generators, install them (the download is not run)."""

from __future__ import annotations

import builtins
import importlib.util
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT

from models import load_ibcln
from util.errors import UserError


def get_weights():
    spec = importlib.util.spec_from_file_location("get_weights", REPO_ROOT / "scripts" / "get_weights.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def zip_archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def generator_bytes(seeded_weights: Path) -> dict[str, bytes]:
    return {net: (seeded_weights / f"final_net_{net}.pth").read_bytes() for net in ("G_T", "G_R")}


def test_zip_as_released_is_unpacked_verified_and_installed(seeded_weights, tmp_path, capsys):
    nets = generator_bytes(seeded_weights)
    archive = zip_archive(tmp_path / "IBCLN.zip", {
        "IBCLN/final_net_G_T.pth": nets["G_T"], "IBCLN/final_net_G_R.pth": nets["G_R"],
        "__MACOSX/IBCLN/._final_net_G_T.pth": b"resource fork", "IBCLN/readme.txt": b"hello"})
    out = tmp_path / "checkpoints" / "IBCLN"
    get_weights().main(["--archive", str(archive), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["final_net_G_R.pth", "final_net_G_T.pth"]
    assert (out / "final_net_G_T.pth").read_bytes() == nets["G_T"]
    assert "both load as IBCLN generators (ngf 8" in capsys.readouterr().out
    assert load_ibcln(str(out), device="cpu").ngf == 8
    # Run again: the files are there, so they are only checked.
    get_weights().main(["--out", str(out)])
    assert "already holds final_net_G_T.pth and final_net_G_R.pth" in capsys.readouterr().out


def test_tar_with_another_epoch_prefix(seeded_weights, tmp_path, capsys):
    archive = tmp_path / "weights.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for net in ("G_T", "G_R"):
            tf.add(seeded_weights / f"final_net_{net}.pth", arcname=f"deep/er/80_net_{net}.pth")
    out = tmp_path / "out"
    get_weights().main(["--archive", str(archive), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["80_net_G_R.pth", "80_net_G_T.pth"]
    assert "pass --epoch 80" in capsys.readouterr().out


def test_a_file_that_is_no_generator_installs_nothing(seeded_weights, tmp_path):
    nets = generator_bytes(seeded_weights)
    archive = zip_archive(tmp_path / "bad.zip", {"final_net_G_T.pth": nets["G_T"], "final_net_G_R.pth": b"garbage"})
    out = tmp_path / "out"
    with pytest.raises(UserError, match="final_net_G_R.pth: cannot be loaded safely as a checkpoint"):
        get_weights().main(["--archive", str(archive), "--out", str(out)])
    assert list(out.iterdir()) == []  # the staging folder is gone, nothing was moved in
    torch.save({"conv1.0.weight": torch.zeros(8, 9, 5, 5)}, tmp_path / "half.pth")
    half = zip_archive(tmp_path / "half.zip", {"final_net_G_T.pth": nets["G_T"],
                                                "final_net_G_R.pth": (tmp_path / "half.pth").read_bytes()})
    with pytest.raises(UserError, match="not an IBCLN generator|does not match the ConvLSTMGenerator"):
        get_weights().main(["--archive", str(half), "--out", str(out)])
    assert list(out.iterdir()) == []


def test_archives_without_the_pair_or_of_another_kind_are_one_line_errors(seeded_weights, tmp_path):
    only_t = zip_archive(tmp_path / "t.zip", {"x/final_net_G_T.pth": generator_bytes(seeded_weights)["G_T"]})
    with pytest.raises(UserError, match=r"no pair <epoch>_net_G_T.pth / <epoch>_net_G_R.pth inside \(found: "
                                        r"x/final_net_G_T.pth\)"):
        get_weights().main(["--archive", str(only_t), "--out", str(tmp_path / "out")])
    rar = tmp_path / "weights.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00 not supported")
    with pytest.raises(UserError, match="not a zip or tar archive"):
        get_weights().main(["--archive", str(rar), "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="--archive .*nothing.zip: no such file"):
        get_weights().main(["--archive", str(tmp_path / "nothing.zip"), "--out", str(tmp_path / "out")])


def test_download_without_gdown_names_the_package(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_gdown(name, *args, **kwargs):
        if name == "gdown":
            raise ImportError("No module named 'gdown'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gdown)
    with pytest.raises(UserError, match="needs the 'gdown' package: pip install gdown .*--archive"):
        get_weights().main(["--out", str(tmp_path / "out")])
