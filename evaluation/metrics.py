"""PSNR and SSIM as the single-image reflection removal literature computes them.

Both on uint8 RGB arrays (H, W, 3) with data range 255, using scikit-image. The protocol of the
ERRNet-family evaluation code, which the later papers that reprint IBCLN's Table 1 use:

- PSNR "band-wise" (the default): ``peak_signal_noise_ratio`` of each RGB channel on its own, then the
  mean of the three values. It is not the PSNR of the pooled MSE: the mean of logarithms is at least
  the logarithm of the mean, so band-wise >= pooled (on the Nature set's inputs 20.53 vs 20.32 dB).
- PSNR "pooled" (``--psnr pooled``, for comparison only): one PSNR over all pixels and channels.
- SSIM: ``structural_similarity`` of each channel (7x7 uniform window, scikit-image's defaults
  otherwise), averaged over the three channels (``channel_axis=2`` does exactly this).

A channel identical to the ground truth has an infinite PSNR, and so has the band-wise mean.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_PROTOCOLS = ("bandwise", "pooled")


def describe_protocol(psnr: str = "bandwise") -> str:
    """Return one line saying how PSNR and SSIM are computed under the given PSNR protocol."""
    if psnr == "bandwise":
        how = "PSNR per RGB channel (data range 255), averaged over the 3 channels"
    else:
        how = "PSNR over all pixels and channels pooled (data range 255; not the literature's band-wise value)"
    return f"{how}; SSIM per channel (7x7 window), averaged; on the saved uint8 images, then averaged over images"


def psnr(prediction: np.ndarray, target: np.ndarray, protocol: str = "bandwise") -> float:
    """Return the PSNR in dB of a uint8 RGB prediction against its target: band-wise mean, or pooled."""
    _check_pair(prediction, target)
    if protocol == "pooled":
        return float(peak_signal_noise_ratio(target, prediction, data_range=255))
    if protocol != "bandwise":
        raise ValueError(f"unknown PSNR protocol {protocol!r}; expected one of {PSNR_PROTOCOLS}")
    with np.errstate(divide="ignore"):  # an identical channel gives inf, which is the right answer
        values = [peak_signal_noise_ratio(target[..., c], prediction[..., c], data_range=255)
                  for c in range(target.shape[2])]
    return float(np.mean(values))


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Return the SSIM of a uint8 RGB prediction against its target (per channel, averaged; nan below 7x7)."""
    _check_pair(prediction, target)
    if min(target.shape[:2]) < 7:
        return float("nan")  # SSIM's 7x7 window does not fit
    return float(structural_similarity(target, prediction, data_range=255, channel_axis=2))


def psnr_ssim(prediction: np.ndarray, target: np.ndarray, protocol: str = "bandwise") -> tuple[float, float]:
    """Return (PSNR in dB, SSIM) of a uint8 RGB prediction against a uint8 RGB target of the same size."""
    return psnr(prediction, target, protocol), ssim(prediction, target)


def _check_pair(prediction: np.ndarray, target: np.ndarray) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {target.shape}")
    if prediction.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError("PSNR/SSIM expect uint8 images")
    if prediction.ndim != 3 or prediction.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB images, got {prediction.shape}")
