"""PSNR and SSIM as the single-image reflection removal literature computes them.

Both on uint8 RGB arrays (H, W, 3) with data_range 255, using scikit-image: PSNR over all pixels and
channels, SSIM computed per channel and averaged over the channels (channel_axis=2, 7x7 window).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr_ssim(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Return (PSNR in dB, SSIM) of a uint8 RGB prediction against a uint8 RGB target of the same size."""
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {target.shape}")
    if prediction.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError("psnr_ssim expects uint8 images")
    psnr = peak_signal_noise_ratio(target, prediction, data_range=255)
    if min(target.shape[:2]) < 7:
        ssim = float("nan")  # SSIM's 7x7 window does not fit
    else:
        ssim = structural_similarity(target, prediction, data_range=255, channel_axis=2)
    return float(psnr), float(ssim)
