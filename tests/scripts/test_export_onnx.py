"""scripts/export_onnx.py: one ONNX graph for the whole cascade, dynamic sizes, onnxruntime parity with PyTorch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, skimage_photo

from models import load_ibcln
from util.errors import UserError
from util.images import pad_to_multiple

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -r requirements-dev.txt)")

PARITY = 1e-4


def export_module():
    spec = importlib.util.spec_from_file_location("export_onnx", REPO_ROOT / "scripts" / "export_onnx.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(seeded_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "ibcln.onnx"
    export_module().main(["--weights", str(seeded_weights), "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def session(exported: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])


def test_graph_has_one_input_two_outputs_and_dynamic_sizes(session):
    (image,) = session.get_inputs()
    assert image.name == "image" and image.shape[1] == 3
    assert all(isinstance(d, str) for d in (image.shape[0], image.shape[2], image.shape[3]))
    assert [o.name for o in session.get_outputs()] == ["T", "R"]


@pytest.mark.parametrize("size", [(64, 96), (256, 256), (299, 450)])
def test_onnxruntime_matches_pytorch(session, seeded_weights, size):
    photo = skimage_photo("astronaut", size)
    image = pad_to_multiple(torch.from_numpy(photo.copy()).permute(2, 0, 1).float().div(255)[None], 4)
    assert image.shape[-2] % 4 == 0 and image.shape[-1] % 4 == 0
    model = load_ibcln(str(seeded_weights), device="cpu", channels_last=False)
    with torch.inference_mode():
        t, r = model.as_module()(image)
    onnx_t, onnx_r = session.run(["T", "R"], {"image": image.numpy()})
    assert onnx_t.shape == onnx_r.shape == tuple(image.shape)
    assert float(np.abs(onnx_t - t.numpy()).max()) <= PARITY
    assert float(np.abs(onnx_r - r.numpy()).max()) <= PARITY
    # The module is the API's cascade: its T_3, cropped, is what remove_reflection returns.
    h, w = size
    api_t, _ = model.remove_reflection(image[..., :h, :w])
    assert torch.equal(api_t, t[..., :h, :w])
    assert float(t.std()) > 0.05


@pytest.mark.slow
def test_runs_in_onnxruntime_without_project_code(exported, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnxruntime
        assert not any(name in sys.modules for name in ("models", "torch", "util"))
        session = onnxruntime.InferenceSession({str(exported)!r}, providers=["CPUExecutionProvider"])
        t, r = session.run(None, {{"image": np.random.rand(2, 3, 40, 52).astype(np.float32)}})
        assert t.shape == r.shape == (2, 3, 40, 52) and 0 <= t.min() and t.max() <= 1
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_missing_export_package_is_named(monkeypatch, seeded_weights, tmp_path):
    module = export_module()
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args)

    monkeypatch.setattr(module.importlib, "import_module", fake_import)
    with pytest.raises(UserError, match="ONNX export needs the 'onnxscript' package: pip install"):
        module.main(["--weights", str(seeded_weights), "--out", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists()
