"""Tests for data/synthesis.py: conformance with the released synthesis and the docs/method.md §5 contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from data.synthesis import (
    VIGNETTE_SIZE,
    SynthParams,
    draw_params,
    gaussian_kernel1d,
    is_rejected,
    sigma_choices,
    synthesize,
    vignette_mask,
    vignette_window,
)


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict]:
    arrays = np.load(FIXTURES / "synth1.npz")
    params = json.loads((FIXTURES / "synth1.json").read_text())
    return {k: torch.from_numpy(arrays[k]) for k in ("T", "R", "R_out", "I")}, params


def _photo(seed: int, h: int = 64, w: int = 64, n: int | None = None) -> torch.Tensor:
    # Smooth random images in [0, 1] with some saturated areas, so that overflow compensation is exercised.
    g = torch.Generator().manual_seed(seed)
    shape = (3, h // 8, w // 8) if n is None else (n, 3, h // 8, w // 8)
    low = torch.rand(shape, generator=g)
    batch = low if n is not None else low[None]
    up = torch.nn.functional.interpolate(batch, size=(h, w), mode="bilinear", align_corners=False)
    up = (up * 1.3).clamp(0.0, 1.0)
    return up if n is not None else up[0]


def test_matches_released_reference(reference):
    data, p = reference
    assert gaussian_kernel1d(p["sigma"]).numel() == p["kernel_size"]
    offset = (p["offset_y"], p["offset_x"])
    r_out, i = synthesize(data["T"], data["R"], p["sigma"], p["att"], p["alpha"], offset)
    assert r_out.dtype == torch.float32 and i.dtype == torch.float32
    assert r_out.shape == data["R_out"].shape and i.shape == data["I"].shape
    err_r = (r_out - data["R_out"]).abs().max().item()
    err_i = (i - data["I"]).abs().max().item()
    assert err_r <= 1e-4, err_r
    assert err_i <= 1e-4, err_i


def test_reference_is_sensitive_to_parameters(reference):
    # Guards the conformance test itself: a wrong att or offset must be detected at 1e-4.
    data, p = reference
    off = (p["offset_y"], p["offset_x"])
    r_out, _ = synthesize(data["T"], data["R"], p["sigma"], p["att"] + 0.01, p["alpha"], off)
    assert (r_out - data["R_out"]).abs().max().item() > 1e-3
    _, i = synthesize(data["T"], data["R"], p["sigma"], p["att"], p["alpha"], (off[0] + 1, off[1]))
    assert (i - data["I"]).abs().max().item() > 1e-4


@pytest.mark.parametrize("sigma", [2.0, 3.518987341772152, 4.01, 5.0])
def test_gaussian_kernel1d(sigma):
    k = gaussian_kernel1d(sigma)
    assert k.dim() == 1 and k.numel() == 2 * math.ceil(2 * sigma) + 1
    assert abs(k.sum().item() - 1.0) < 1e-12
    assert torch.equal(k, k.flip(0))
    assert k.argmax().item() == (k.numel() - 1) // 2
    # Sampled Gaussian: ratio of neighbours follows exp(-(2x+1)/(2 sigma^2)).
    c = (k.numel() - 1) // 2
    assert math.isclose((k[c + 1] / k[c]).item(), math.exp(-1 / (2 * sigma**2)), rel_tol=1e-12)


def test_sigma_choices():
    s = sigma_choices()
    assert s.shape == (80,) and s[0].item() == 2.0 and s[-1].item() == 5.0
    assert torch.allclose(s.diff(), torch.full((79,), 3 / 79, dtype=torch.float64))
    s2 = sigma_choices(1.0, 3.0, 5)
    assert s2.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]


def test_vignette_mask():
    m = vignette_mask()
    assert m.shape == (VIGNETTE_SIZE, VIGNETTE_SIZE)
    assert m.max().item() == 1.0 and m.min().item() > 0.0
    assert torch.equal(m, m.T) and torch.allclose(m, m.flip(0), atol=1e-12, rtol=0)
    # Centre bright, corners dark (nsig = 3: the edge of each 1-D factor is ~exp(-4.5) of its peak).
    assert m[279, 279].item() == pytest.approx(1.0, abs=1e-12) and 0.005 < m[0, 0].item() < 0.02
    assert vignette_mask() is m  # cached
    assert vignette_mask(100, 1.0).shape == (100, 100)


def test_vignette_window_small_is_unscaled_crop():
    m = vignette_mask()
    cases = [(256, 256, (200, 120)), (550, 300, (0, 249)), (10, 550, (549, 0)), (550, 550, (10, 10))]
    for h, w, off in cases:
        win = vignette_window(h, w, off)
        assert win.shape == (h, w)
        assert torch.equal(win, m[off[0] : off[0] + h, off[1] : off[1] + w])
    with pytest.raises(ValueError):
        vignette_window(256, 256, (400, 0))


def test_large_image():
    h, w = 600, 900
    g = torch.Generator().manual_seed(3)
    side = max(h, w) + 10
    offsets = {draw_params(h, w, g).offset for _ in range(200)}
    assert all(0 <= y < side - h - 10 and x == 0 for y, x in offsets)
    assert max(y for y, _ in offsets) > 280  # the whole range [0, 300) is used
    # At exactly 550 the released range is empty: offset 0, still the unscaled mask.
    assert {draw_params(550, 100, g).offset[0] for _ in range(20)} == {0}
    p = draw_params(h, w, torch.Generator().manual_seed(0))
    win = vignette_window(h, w, p.offset)
    assert win.shape == (h, w) and 0.0 < win.min().item() and win.max().item() <= 1.0
    # The scaled mask (side 910 here) keeps the vignette's shape: bright in the middle, dark at the corner.
    corner = vignette_window(h, w, (0, 0))
    assert corner[454, 454] > 0.99 and corner[0, 0] < 0.02
    with pytest.raises(ValueError):
        vignette_window(h, w, (311, 0))
    t, r = _photo(1, h, w), _photo(2, h, w)
    r_out, i = synthesize(t, r, p.sigma, p.att, p.alpha, p.offset)
    assert r_out.shape == (3, h, w) and i.shape == (3, h, w)
    for x in (r_out, i):
        assert torch.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0


def test_draw_params_ranges():
    g = torch.Generator().manual_seed(0)
    choices = set(sigma_choices().tolist())
    sigmas, atts, alphas, ys, xs = set(), [], [], [], []
    for _ in range(2000):
        p = draw_params(256, 200, g)
        assert isinstance(p, SynthParams)
        assert p.sigma in choices
        sigmas.add(p.sigma)
        atts.append(p.att)
        alphas.append(p.alpha)
        ys.append(p.offset[0])
        xs.append(p.offset[1])
    assert len(sigmas) > 60  # all 80 values reachable, not a fixed one
    assert 1.08 <= min(atts) and max(atts) < 1.18 and max(atts) - min(atts) > 0.09
    assert 0.8 < min(alphas) and max(alphas) <= 1.0 and max(alphas) - min(alphas) > 0.18
    assert min(ys) >= 0 and max(ys) < 560 - 256 - 10 and max(ys) > 250
    assert min(xs) >= 0 and max(xs) < 560 - 200 - 10 and max(xs) > 300


def test_draw_params_sigma_range_follows_options():
    g = torch.Generator().manual_seed(1)
    choices = set(sigma_choices(1.0, 1.5).tolist())
    sigmas = {draw_params(64, 64, g, sigma_min=1.0, sigma_max=1.5).sigma for _ in range(300)}
    assert sigmas <= choices and min(sigmas) >= 1.0 and max(sigmas) <= 1.5 and len(sigmas) > 40


def test_draw_params_deterministic():
    a = [draw_params(128, 96, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert a[0] == a[1]
    g = torch.Generator().manual_seed(7)
    seq = [draw_params(128, 96, g) for _ in range(5)]
    assert seq[0] == a[0] and len(set(seq)) == 5


def test_batched_equals_per_image():
    t, r = _photo(10, n=3), _photo(11, n=3)
    args = (3.0, 1.12, 0.9, (17, 33))
    r_out, i = synthesize(t, r, *args)
    assert r_out.shape == (3, 3, 64, 64)
    for k in range(3):
        r1, i1 = synthesize(t[k], r[k], *args)
        assert torch.allclose(r_out[k], r1, atol=1e-6, rtol=0) and torch.allclose(i[k], i1, atol=1e-6, rtol=0)
    # Overflow mean is per image: a batch-mate must not change an image's result.
    r_out2, _ = synthesize(torch.stack([t[0], torch.ones_like(t[0])]), torch.stack([r[0], r[1]]), *args)
    assert torch.allclose(r_out2[0], r_out[0], atol=1e-6, rtol=0)


def test_output_range_dtype_and_no_nan():
    t, r = _photo(20), _photo(21)
    t[:, :8] = 0.0  # exact zeros go through pow(., 1/2.2)
    r[:, -8:] = 1.0
    for dtype in (torch.float32, torch.float64):
        r_out, i = synthesize(t.to(dtype), r.to(dtype), 5.0, 1.18, 0.8, (0, 0))
        assert r_out.dtype == dtype and i.dtype == dtype
        for x in (r_out, i):
            assert torch.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    # Overflowing blends are compensated: a bright T plus a bright R does not stay saturated everywhere.
    bright_t, bright_r = torch.full((3, 32, 32), 0.95), torch.full((3, 32, 32), 0.9)
    r_out, i = synthesize(bright_t, bright_r, 2.0, 1.1, 1.0, (100, 100))
    assert i.max() <= 1.0 and r_out.max() < 0.9
    zero_r, i0 = synthesize(t, torch.zeros_like(r), 2.0, 1.1, 0.9, (0, 0))
    assert zero_r.abs().max() == 0.0
    assert torch.allclose(i0.double(), (0.9 * t.double() ** 2.2) ** (1 / 2.2), atol=1e-5)


def test_is_rejected_each_condition():
    ok_t = torch.full((3, 8, 8), 0.5)
    ok_r = torch.full((3, 8, 8), 0.5)
    ok_ro = torch.full((3, 8, 8), 0.3)
    ok_i = torch.full((3, 8, 8), 0.6)
    assert not is_rejected(ok_t, ok_r, ok_ro, ok_i)
    # mean(T)/2 > mean(R)
    assert is_rejected(ok_t, torch.full((3, 8, 8), 0.2), ok_ro, ok_i)
    assert not is_rejected(ok_t, torch.full((3, 8, 8), 0.25), ok_ro, ok_i)
    # max(T) < 0.15
    assert is_rejected(torch.full((3, 8, 8), 0.14), ok_r, ok_ro, ok_i)
    # max(R_out) < 0.15
    assert is_rejected(ok_t, ok_r, torch.full((3, 8, 8), 0.14), ok_i)
    # max(I) < 0.1
    assert is_rejected(ok_t, ok_r, ok_ro, torch.full((3, 8, 8), 0.09))
    assert not is_rejected(ok_t, ok_r, ok_ro, torch.full((3, 8, 8), 0.1))

    # Batched: rejected when any image fails.
    def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([a, b])

    assert is_rejected(pair(ok_t, ok_t), pair(ok_r, ok_r), pair(ok_ro, ok_ro * 0.1), pair(ok_i, ok_i))
    assert not is_rejected(pair(ok_t, ok_t), pair(ok_r, ok_r), pair(ok_ro, ok_ro), pair(ok_i, ok_i))
