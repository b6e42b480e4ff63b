"""Tiled inference (models/tiling.py, --tile): tiles cover the image, blend weights sum to one, the tiled cascade is
exact for a pixel-wise cascade and equal to the whole-image run with one tile; bad --tile values are refused."""

from __future__ import annotations

import pytest
import torch
from helpers import FAST, generator_from

from models import tiling
from models.ibcln_model import run_cascade
from options.model_config import create_model
from util.errors import UserError


@pytest.mark.parametrize(("length", "tile", "overlap"),
                         [(64, 32, 8), (100, 32, 16), (48, 64, 16), (2048, 1152, 256), (2048, 1024, 128), (36, 32, 0)])
def test_tiles_cover_the_axis_and_blend_weights_sum_to_one(length, tile, overlap):
    starts = tiling.tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(s % 4 == 0 for s in starts) and starts == sorted(set(starts))
    assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:]))  # at least the asked overlap
    weights = tiling.blend_weights(length, tile, starts)
    total = torch.zeros(length, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        assert weight.shape == (size,) and bool((weight > 0).all())
        total[start:start + size] += weight
    torch.testing.assert_close(total, torch.ones(length, dtype=torch.float64), rtol=0, atol=1e-12)
    # 2-D weights are outer products: they sum to one too.
    grid = torch.zeros(length, length, dtype=torch.float64)
    for y, wy in zip(starts, weights):
        for x, wx in zip(starts, weights):
            grid[y:y + size, x:x + size] += wy[:, None] * wx[None, :]
    torch.testing.assert_close(grid, torch.ones_like(grid), rtol=0, atol=1e-12)


def test_single_tile_weights_are_one():
    assert torch.equal(tiling.blend_weights(48, 64, [0])[0], torch.ones(48, dtype=torch.float64))


def test_tiled_cascade_is_exact_for_a_pixelwise_cascade():
    # A cascade without spatial context: tiling must reproduce it exactly, so any error is the blend's.
    def pixelwise(image):
        return ([image, *(torch.sigmoid(k * image) for k in (1, 2, 3))],
                [torch.full_like(image, 0.1), *(image.square() + k for k in (1, 2, 3))])

    image = torch.rand(1, 3, 72, 100, generator=torch.Generator().manual_seed(1))
    fake_Ts, fake_Rs = tiling.tiled_cascade(pixelwise, image, 32, 12)
    ref_Ts, ref_Rs = pixelwise(image)
    for a, b in zip(fake_Ts + fake_Rs, ref_Ts + ref_Rs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_one_tile_covering_the_image_equals_the_whole_image_run(golden_states):
    g_t, g_r = generator_from(golden_states[0], **FAST), generator_from(golden_states[1], **FAST)
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole_Ts, whole_Rs, _, _ = run_cascade(g_t, g_r, image)
        tiled_Ts, tiled_Rs = tiling.tiled_cascade(lambda crop: run_cascade(g_t, g_r, crop)[:2], image, 64, 16)
    assert all(torch.equal(a, b) for a, b in zip(tiled_Ts + tiled_Rs, whole_Ts + whole_Rs))


def test_tiled_test_model_stitches_the_cascade(make_options, tmp_path, golden_states):
    opt = make_options("test", "--dataroot", str(tmp_path), "--name", "t", "--tile", "32", "--tile_overlap", "8")
    model = create_model(opt)
    model.netG_T.load_state_dict(golden_states[0])
    model.netG_R.load_state_dict(golden_states[1])
    model.eval()
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=torch.bool)})
    model.test()
    assert model.fake_T_half is None and model.fake_T_quarter is None
    with torch.inference_mode():
        expected_Ts, expected_Rs = tiling.tiled_cascade(lambda c: run_cascade(model.netG_T, model.netG_R, c)[:2],
                                                        image, 32, 8)
        whole = run_cascade(model.netG_T, model.netG_R, image)[0][3].clamp(0, 1)
    for a, b in zip(model.fake_Ts + model.fake_Rs, expected_Ts + expected_Rs):
        assert a.shape == (1, 3, 48, 64) and 0 <= float(a.min()) and float(a.max()) <= 1
        torch.testing.assert_close(a, b.clamp(0, 1), rtol=0, atol=1e-6)
    # Tiles see less context than the whole image: close to it, but not equal.
    diff = (model.fake_Ts[3] - whole).abs()
    assert 0 < float(diff.max()) and float(diff.mean()) < 0.1


@pytest.mark.parametrize(("tile", "overlap"), [("30", "8"), ("32", "20"), ("32", "6"), ("-4", "0")])
def test_bad_tile_options_are_user_errors(make_options, tmp_path, tile, overlap):
    opt = make_options("test", "--dataroot", str(tmp_path), "--name", "t", "--tile", tile, "--tile_overlap", overlap)
    with pytest.raises(UserError, match="--tile"):
        create_model(opt)
