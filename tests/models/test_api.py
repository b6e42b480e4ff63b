"""The Python API (models/api.py): loading, input and output types, padding, steps, tiles, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import skimage_photo
from PIL import Image

from models import load_ibcln, memory
from models.api import ReflectionRemover
from models.ibcln_model import run_cascade
from util import machine
from util.errors import UserError
from util.images import pad_to_multiple, tensor2im


@pytest.fixture(scope="module")
def model(seeded_weights: Path) -> ReflectionRemover:
    return load_ibcln(str(seeded_weights), device="cpu", channels_last=False)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_photo("astronaut", (50, 70))  # H and W not multiples of 4


def reference(model: ReflectionRemover, image: np.ndarray, steps: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """T_k and R_k straight from run_cascade on the reflect-padded image, cropped and rounded."""
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255)[None]
    padded = pad_to_multiple(x, 4)
    nets = model.model.nets()
    with torch.inference_mode():
        fake_Ts, fake_Rs, _, _ = run_cascade(nets["G_T"], nets["G_R"], padded)
    h, w = image.shape[:2]
    return (tensor2im(fake_Ts[steps].clamp(0, 1)[..., :h, :w]), tensor2im(fake_Rs[steps].clamp(0, 1)[..., :h, :w]))


def test_loads_in_eval_mode_with_the_width_read_from_the_weights(model):
    assert model.ngf == 8 and model.device == torch.device("cpu")
    assert all(not net.training for net in model.model.nets().values())
    assert model.describe() == "cpu, NCHW, fp32, ngf 8"
    assert [Path(p).name for p in model.weights] == ["final_net_G_T.pth", "final_net_G_R.pth"]


def test_array_in_array_out_equals_the_cascade_at_the_original_size(model, photo):
    t, r = model.remove_reflection(photo)
    assert t.shape == r.shape == photo.shape and t.dtype == r.dtype == np.uint8
    expected_t, expected_r = reference(model, photo)
    assert np.array_equal(t, expected_t) and np.array_equal(r, expected_r)
    assert np.abs(t.astype(int) - photo).mean() > 5  # the seeded weights change the image


@pytest.mark.parametrize("steps", [1, 2])
def test_steps_return_the_earlier_cascade_steps(model, photo, steps):
    t, r = model.remove_reflection(photo, steps=steps)
    expected_t, expected_r = reference(model, photo, steps)
    assert np.array_equal(t, expected_t) and np.array_equal(r, expected_r)
    assert not np.array_equal(t, model.remove_reflection(photo)[0])


def test_pil_in_pil_out_and_other_modes_are_converted_as_the_datasets_do(model, photo):
    t, r = model.remove_reflection(Image.fromarray(photo))
    assert isinstance(t, Image.Image) and t.mode == "RGB" and t.size == (70, 50) and r.size == (70, 50)
    assert np.array_equal(np.asarray(t), model.remove_reflection(photo)[0])
    # RGBA: transparent pixels become white, as data/image_folder.py load_rgb composites them.
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0
    on_white = photo.copy()
    on_white[:10] = 255
    t_rgba, _ = model.remove_reflection(Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(np.asarray(t_rgba), model.remove_reflection(on_white)[0])


def test_tensor_batches_keep_shape_dtype_and_match_single_images(model, photo):
    single = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
    other = torch.flip(single, dims=[2])
    batch = torch.stack([single, other]).double()
    t, r = model.remove_reflection(batch)
    assert t.shape == r.shape == (2, 3, 50, 70) and t.dtype == torch.float64
    t_single, _ = model.remove_reflection(single)
    assert t_single.shape == (3, 50, 70) and t_single.dtype == torch.float32
    torch.testing.assert_close(t[0].float(), t_single, rtol=0, atol=1e-5)
    assert float((t[0] - t[1]).abs().max()) > 0.05
    assert 0 <= float(t.min()) and float(t.max()) <= 1


def test_without_reflection_the_last_g_r_pass_is_skipped(model, photo):
    t, r = model.remove_reflection(photo, reflection=False)
    assert r is None and np.array_equal(t, model.remove_reflection(photo)[0])


def test_explicit_tiles_run_the_tiled_cascade(model):
    image = skimage_photo("coffee", (70, 90))
    t, _ = model.remove_reflection(image, tile=32)
    assert model.last_plan == memory.TilePlan(32, 16)
    whole, _ = model.remove_reflection(image, tile=0)
    assert model.last_plan.tile == 0
    diff = np.abs(t.astype(int) - whole)
    assert t.shape == image.shape and 0 < diff.max() and diff.mean() < 25


def test_auto_tiles_only_when_the_whole_image_would_not_fit(model, monkeypatch):
    image = skimage_photo("coffee", (300, 320))
    monkeypatch.setattr(machine, "available_bytes", lambda device: (64 * 2**30, "RAM"))
    model.remove_reflection(image, steps=1)
    assert model.last_plan.tile == 0 and "whole image" in model.last_plan.describe(300, 320)
    # Too little memory for the whole image at the authors' width: the planner picks the smallest tile.
    needed = memory.whole_image_bytes(300 * 320, ngf=8)
    monkeypatch.setattr(machine, "available_bytes", lambda device: (needed, "RAM"))
    t, _ = model.remove_reflection(image, steps=1)
    plan = model.last_plan
    assert plan.tile == memory.MIN_TILE and plan.overlap == 128 and t.shape == image.shape
    assert plan.describe(300, 320).startswith("320x300: tiles of 256 px, overlap 128 (a whole-image pass needs")


def test_out_of_gpu_memory_retries_with_smaller_tiles(model, monkeypatch):
    image = skimage_photo("coffee", (600, 560))
    tiles_tried = []
    real_infer = model.model.infer

    def infer(padded, steps, last_R=True, tile=None, overlap=None):
        tiles_tried.append(tile)
        if not tile or tile > memory.MIN_TILE:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_infer(padded, steps, last_R, tile, overlap)

    monkeypatch.setattr(model.model, "infer", infer)
    monkeypatch.setattr(machine, "available_bytes", lambda device: (64 * 2**30, "RAM"))
    t, _ = model.remove_reflection(image, steps=1, reflection=False)
    assert tiles_tried == [0, 300, 256]  # halved, then the smallest tile
    assert t.shape == image.shape and model.last_plan.tile == 256
    assert "after running out of memory" in model.last_plan.where
    # A tile size given explicitly is not changed behind the caller's back.
    with pytest.raises(UserError, match="out of GPU memory on a 560x600 input with tiles of 512 px"):
        model.remove_reflection(image, tile=512)


def test_missing_weights_name_both_files_and_where_to_get_them(tmp_path):
    with pytest.raises(UserError) as err:
        load_ibcln(str(tmp_path), device="cpu")
    message = str(err.value)
    assert "final_net_G_T.pth" in message and "final_net_G_R.pth" in message
    assert "scripts/get_weights.py" in message and "github.com/JHL-HUST/IBCLN" in message


def test_other_epochs_and_foreign_files(seeded_weights, tmp_path):
    for net in ("G_T", "G_R"):
        (tmp_path / f"7_net_{net}.pth").write_bytes((seeded_weights / f"final_net_{net}.pth").read_bytes())
    assert load_ibcln(str(tmp_path), device="cpu", epoch="7").ngf == 8
    torch.save({"weight": torch.zeros(3)}, tmp_path / "7_net_G_R.pth")
    with pytest.raises(UserError, match="7_net_G_R.pth: not an IBCLN generator"):
        load_ibcln(str(tmp_path), device="cpu", epoch="7")


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((8, 8), np.uint8), "HxWx3 uint8"),
    (np.zeros((8, 8, 3), np.float32), "HxWx3 uint8"),
    (torch.zeros(1, 4, 8, 8), "float"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
    ([[0, 0]], "expected a PIL image"),
    (np.zeros((3, 9, 3), np.uint8), "9x3 pixels is smaller than the 4x4"),
])
def test_bad_inputs_are_one_line_errors(model, image, message):
    with pytest.raises(UserError, match=message):
        model.remove_reflection(image)


def test_bad_arguments_are_one_line_errors(model, photo, seeded_weights):
    with pytest.raises(UserError, match="steps=4"):
        model.remove_reflection(photo, steps=4)
    with pytest.raises(UserError, match="--tile 30"):
        model.remove_reflection(photo, tile=30)
    with pytest.raises(UserError, match="--device tpu"):
        load_ibcln(str(seeded_weights), device="tpu")
    with pytest.raises(UserError, match="tile_overlap=6"):
        load_ibcln(str(seeded_weights), device="cpu", tile_overlap=6)


def test_loading_leaves_the_callers_global_torch_settings_as_they_were(seeded_weights, repo_root, kernel_flags):
    # A user's own choices: deterministic algorithms, and cuDNN benchmark mode on.
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    load_ibcln(str(seeded_weights), device="cpu")
    torch.hub.load(str(repo_root), "ibcln", source="local", weights=str(seeded_weights), device="cpu")
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic


def test_bf16_support_is_asked_of_the_gpu_it_was_given(seeded_weights, monkeypatch):
    asked = []
    capabilities = {0: (8, 0), 1: (7, 5)}  # GPU 0 computes bf16 natively (an A100), GPU 1 does not (a T4)

    def get_device_capability(device=None):
        index = torch.cuda.current_device() if device is None else torch.device(device).index
        asked.append(index)
        return capabilities[index]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    with pytest.raises(UserError, match=r"^--amp bf16: cuda:1 has no native bfloat16"):
        load_ibcln(str(seeded_weights), device="cuda:1", amp="bf16")  # refused before any GPU is touched
    assert asked == [1]
