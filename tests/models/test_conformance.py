"""Conformance with the released IBCLN: deterministic weights on the reference image give the golden outputs.

tests/fixtures/make_weights.py builds generator weights from the key list and a seed (G_T seed 1, G_R seed 2);
golden_a_seed1.npz holds T1..T3 and R1..R3 (clamped) of the released code for reference_data/testB/a.png, and
expected_seed1/ the PNGs its test.py writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from PIL import Image

from data.image_folder import load_rgb
from models.ibcln_model import run_cascade
from models.networks import ConvLSTMGenerator
from util.images import to_tensor

REFERENCE_INPUT = FIXTURES / "reference_data" / "testB" / "a.png"


@pytest.fixture(scope="module")
def weights(golden_states) -> dict[str, dict[str, torch.Tensor]]:
    return {"G_T": golden_states[0], "G_R": golden_states[1]}


def _generator(state: dict[str, torch.Tensor]) -> ConvLSTMGenerator:
    net = ConvLSTMGenerator()
    net.load_state_dict(state, strict=True)
    return net.eval()


def _cascade(g_t: ConvLSTMGenerator, g_r: ConvLSTMGenerator, image: torch.Tensor):
    with torch.inference_mode():
        fake_Ts, fake_Rs, _, _ = run_cascade(g_t, g_r, image)
    return [t.clamp(0, 1) for t in fake_Ts], [r.clamp(0, 1) for r in fake_Rs]


@pytest.fixture(scope="module")
def reference_image() -> torch.Tensor:
    return to_tensor(load_rgb(str(REFERENCE_INPUT)))[None]


@pytest.fixture(scope="module")
def ours(weights, reference_image):
    return _cascade(_generator(weights["G_T"]), _generator(weights["G_R"]), reference_image)


def test_cascade_matches_golden_arrays(ours):
    fake_Ts, fake_Rs = ours
    golden = np.load(FIXTURES / "golden_a_seed1.npz")
    assert sorted(golden.files) == ["R1", "R2", "R3", "T1", "T2", "T3"]
    for name in golden.files:
        expected = golden[name]
        got = (fake_Ts if name[0] == "T" else fake_Rs)[int(name[1])][0].numpy()
        assert got.shape == expected.shape
        err = float(np.abs(got - expected).max())
        assert err <= 1e-4, f"{name}: max abs error {err}"


def test_golden_arrays_are_not_trivial():
    # Guards the conformance test: the golden steps differ from each other and from the input.
    golden = np.load(FIXTURES / "golden_a_seed1.npz")
    image = to_tensor(load_rgb(str(REFERENCE_INPUT))).numpy()
    for name in golden.files:
        assert np.abs(golden[name] - image).max() > 0.05
        assert 0.01 < golden[name].std()
    assert np.abs(golden["T1"] - golden["T3"]).max() > 0.01
    assert np.abs(golden["R1"] - golden["R3"]).max() > 0.01


def test_other_sizes_and_swapped_weights(weights, reference_image):
    # The generator does not special-case the reference data: a 64x96 crop runs, and swapping the two weight
    # sets (G_T <-> G_R) changes the result.
    crop = reference_image[..., 40:104, 80:176].contiguous()
    assert crop.shape == (1, 3, 64, 96)
    g_t, g_r = _generator(weights["G_T"]), _generator(weights["G_R"])
    fake_Ts, fake_Rs = _cascade(g_t, g_r, crop)
    assert all(t.shape == crop.shape for t in fake_Ts + fake_Rs)
    assert all(bool(torch.isfinite(t).all()) for t in fake_Ts + fake_Rs)
    assert fake_Ts[3].std() > 0.01
    swapped_Ts, swapped_Rs = _cascade(g_r, g_t, crop)
    assert (swapped_Ts[3] - fake_Ts[3]).abs().max() > 0.01
    assert (swapped_Rs[3] - fake_Rs[3]).abs().max() > 0.01


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_test_py_writes_the_expected_pngs(tmp_path, weights, script_runner):
    name = "conformance"
    folder = tmp_path / "checkpoints" / name
    folder.mkdir(parents=True)
    for net, state in weights.items():
        torch.save(state, folder / f"final_net_{net}.pth")
    results = tmp_path / "results"
    proc = script_runner("test.py", "--dataroot", str(FIXTURES / "reference_data"), "--name", name, "--model", "IBCLN",
                         "--checkpoints_dir", str(tmp_path / "checkpoints"), "--results_dir", str(results),
                         "--epoch", "final", "--gpu_ids", "-1", "--preprocess", "", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = results / name / "test_final" / "images"
    expected_files = sorted((FIXTURES / "expected_seed1").glob("*.png"))
    assert len(expected_files) == 10
    for expected in expected_files:
        ours = images / expected.name
        assert ours.is_file(), f"test.py did not write {expected.name}"
        a, b = _png(ours), _png(expected)
        assert a.shape == b.shape, expected.name
        diff = int(np.abs(a - b).max())
        assert diff <= 1, f"{expected.name}: max difference {diff} grey levels"
    assert (results / name / "test_final" / "index.html").is_file()
