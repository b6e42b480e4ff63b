"""The metric protocol (evaluation/metrics.py): band-wise PSNR by hand, pooled PSNR on request, SSIM per channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from evaluation.metrics import psnr, psnr_ssim, ssim
from evaluation.scoring import mean_scores, weighted_mean
from util.logs import metric_columns


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """A flat grey target and a prediction off by 1, 2 and 4 grey levels in R, G and B (MSE 1, 4, 16)."""
    target = np.full((8, 8, 3), 100, np.uint8)
    prediction = target.copy()
    prediction[..., 0] += 1
    prediction[..., 1] += 2
    prediction[..., 2] += 4
    return prediction, target


def test_bandwise_psnr_is_the_mean_of_the_three_channel_psnrs():
    prediction, target = _pair()
    by_hand = np.mean([10 * math.log10(255**2 / mse) for mse in (1, 4, 16)])  # 42.1102 dB
    assert psnr(prediction, target) == pytest.approx(by_hand, abs=1e-9)
    assert psnr(prediction, target) == pytest.approx(42.1102, abs=1e-4)


def test_pooled_psnr_is_the_psnr_of_the_mean_squared_error_over_all_channels():
    prediction, target = _pair()
    by_hand = 10 * math.log10(255**2 / ((1 + 4 + 16) / 3))  # 39.6798 dB
    assert psnr(prediction, target, "pooled") == pytest.approx(by_hand, abs=1e-9)
    assert psnr(prediction, target, "bandwise") > psnr(prediction, target, "pooled")


def test_an_identical_channel_makes_the_bandwise_psnr_infinite():
    prediction, target = _pair()
    prediction[..., 0] = target[..., 0]
    assert math.isinf(psnr(prediction, target))
    assert math.isfinite(psnr(prediction, target, "pooled"))


def test_ssim_is_the_per_channel_mean():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    prediction = np.clip(target.astype(int) + rng.integers(-20, 21, target.shape), 0, 255).astype(np.uint8)
    per_channel = [structural_similarity(target[..., c], prediction[..., c], data_range=255) for c in range(3)]
    assert ssim(prediction, target) == pytest.approx(np.mean(per_channel), abs=1e-12)
    assert math.isnan(ssim(prediction[:6], target[:6]))  # the 7x7 window does not fit
    assert psnr_ssim(prediction, target) == (psnr(prediction, target), ssim(prediction, target))


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 9, 3), np.uint8),
                                 np.zeros((8, 8, 1), np.uint8)])
def test_mismatched_inputs_are_refused(bad):
    target = np.zeros(bad.shape if bad.shape[1] == 8 else (8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        psnr(bad, target)


def test_an_unknown_protocol_is_refused():
    prediction, target = _pair()
    with pytest.raises(ValueError, match="unknown PSNR protocol"):
        psnr(prediction, target, "median")


def test_means_and_weighted_means_of_scores():
    a = {"I": (20.0, 0.5), "T_3": (22.0, 0.7)}
    b = {"I": (30.0, 0.9), "T_3": (26.0, 0.8)}
    assert mean_scores([a, None, b]) == {"I": (25.0, 0.7), "T_3": (24.0, 0.75)}
    assert mean_scores([None]) is None
    # 1 image at a's means and 3 at b's: weighted by image count, as the paper's average over 494 images.
    weighted = weighted_mean([(1, a), (3, b)])
    assert weighted["I"] == pytest.approx((27.5, 0.8)) and weighted["T_3"] == pytest.approx((25.0, 0.775))
    assert metric_columns(["I", "T_3"]) == ["PSNR_I", "SSIM_I", "PSNR_T_3", "SSIM_T_3"]
