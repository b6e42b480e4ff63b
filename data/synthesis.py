"""On-the-fly synthesis of training mixtures (docs/method.md §5).

A transmission photo T and a reflection photo R (sRGB, float in [0, 1]) are combined into a
mixture I = clip(((blur(R^2.2) compensated) * vignette + alpha * T^2.2)^(1/2.2), 0, 1).
All functions are pure: every random choice is made in `draw_params` from an explicit
`torch.Generator`, and `synthesize` takes the drawn parameters explicitly.

Conventions that reproduce the released code (checked against tests/fixtures/synth1.npz):
  * the blur is one 2-D float32 convolution with the kernel exp(-(dx^2 + dy^2) / (2 sigma^2))
    sampled at integer offsets -k..k (k = ceil(2 sigma)), normalised to sum 1 (the outer product of
    `gaussian_kernel1d` with itself), with reflection padding that does not repeat the edge pixel
    (torch "reflect");
  * linearisation, blur and overflow compensation run in float32, like the released code; the
    vignette product and everything after it in float64 (the released mask is float64 and promotes);
  * overflow mean m = max(1, sum(blend * [blend > 1]) / (count + 1e-6)) per image and channel on
    blend = r_blur + t (alpha not yet applied); r_blur is clipped to [0, 1] after subtracting
    (m - 1) * att; only I is clipped after the gamma;
  * the blend term adds alpha * t computed in float32, as the released code does.
The released code sums the overflow in float32, whose result depends on the reduction order
(it moves m by an ulp or so between machines). We sum in float64 and round to float32, which is
order-independent; on the fixture this reproduces two channels bit for bit and leaves the third
within 8e-5 (near-zero pixels amplify any ulp through the 1/2.2 power).
On non-CPU devices the convolution runs in float64 and is rounded to float32, so that the result does
not depend on cuDNN's TF32 setting.

Large images: the released code draws the vignette window from a fixed 560x560 mask with
offsets in [0, 560 - H - 10), which is empty once max(H, W) >= 550. For max(H, W) > 550 we scale
the mask up (bilinear, then renormalised to max 1) to a side of max(H, W) + 10 and draw offsets in
that scaled mask. Scaling (rather than tiling) keeps a single smooth vignette whose fall-off stays
proportional to the image. Images with max(H, W) <= 550 use the unscaled 560x560 mask exactly.
Where the released range [0, side - dim - 10) would be empty (a dimension of exactly side - 10,
e.g. 550 in the unscaled mask), the offset along that dimension is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

VIGNETTE_SIZE = 560
# Margin the released code keeps between the window and the far edge of the mask.
_OFFSET_MARGIN = 10
_GAMMA = 2.2


@dataclass(frozen=True)
class SynthParams:
    """Parameters of one synthesised mixture; offset is (y, x) into the vignette mask."""

    sigma: float
    att: float
    alpha: float
    offset: tuple[int, int]


def _linspace(start: float, stop: float, n: int) -> torch.Tensor:
    # start + i * step with the end pinned, as numpy.linspace (used by the released code) computes it;
    # torch.linspace rounds some entries differently in the last bit.
    if n == 1:
        return torch.tensor([start], dtype=torch.float64)
    out = torch.arange(n, dtype=torch.float64) * ((stop - start) / (n - 1)) + start
    out[-1] = stop
    return out


def sigma_choices(sigma_min: float = 2.0, sigma_max: float = 5.0, n: int = 80) -> torch.Tensor:
    """Return the n evenly spaced blur sigmas in [sigma_min, sigma_max] (float64)."""
    return _linspace(sigma_min, sigma_max, n)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Return the float64 1-D Gaussian (size 2*ceil(2*sigma)+1, sum 1), the blur's separable factor."""
    half = math.ceil(2.0 * sigma)
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


@lru_cache(maxsize=4)
def vignette_mask(size: int = VIGNETTE_SIZE, nsig: float = 3.0) -> torch.Tensor:
    """Return the (size, size) float64 vignette mask, a sqrt'd 2-D Gaussian with max 1."""
    # Bin edges of `size` equal bins covering [-nsig - h, nsig + h], h = half a bin
    # ((2*nsig + 1) / size / 2); the CDF differences give the bin probabilities.
    interval = (2.0 * nsig + 1.0) / size
    edges = _linspace(-nsig - interval / 2.0, nsig + interval / 2.0, size + 1)
    k1 = torch.diff(torch.special.ndtr(edges))
    mask = torch.sqrt(torch.outer(k1, k1))
    mask = mask / mask.sum()
    # Cached and shared between callers, so callers must not edit it in place.
    return mask / mask.max()


def _mask_side(h: int, w: int) -> int:
    # The released 560 while the image leaves the released margin; otherwise scaled to keep that margin.
    return max(VIGNETTE_SIZE, max(h, w) + _OFFSET_MARGIN)


def _offset_high(dim: int, side: int) -> int:
    # Exclusive upper bound of the offset draw: the released [0, side - dim - margin), or {0} where empty.
    return max(1, side - dim - _OFFSET_MARGIN)


@lru_cache(maxsize=8)
def _scaled_mask(side: int) -> torch.Tensor:
    base = vignette_mask(VIGNETTE_SIZE, 3.0)
    if side == VIGNETTE_SIZE:
        return base
    up = F.interpolate(base[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    # Keep the contract "max 1" after interpolation.
    return up / up.max()


def vignette_window(h: int, w: int, offset: tuple[int, int]) -> torch.Tensor:
    """Return the (h, w) float64 window at offset (y, x) of the (possibly scaled) vignette mask."""
    side = _mask_side(h, w)
    y, x = offset
    # A view into a cached mask: callers must not modify it in place.
    if y < 0 or x < 0 or y + h > side or x + w > side:
        raise ValueError(f"window {h}x{w} at offset {offset} does not fit in the {side}x{side} mask")
    return _scaled_mask(side)[y : y + h, x : x + w]


def _gaussian_kernel2d(sigma: float, dtype: torch.dtype) -> torch.Tensor:
    # Built the way the released code builds it (squared distance on a 2-D grid, exp, scale, normalise,
    # all in `dtype`), so that float32 rounding of the weights, and hence of the blur, is the same.
    size = 2 * math.ceil(2.0 * sigma) + 1
    coords = torch.arange(size, dtype=dtype)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1)
    centre = (size - 1) / 2.0
    var = sigma * sigma
    k = (1.0 / (2.0 * math.pi * var)) * torch.exp(-((grid - centre) ** 2).sum(dim=-1) / (2.0 * var))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # Per-channel (grouped) 2-D convolution, reflection padding without edge repeat; float32 in and out.
    # Off the CPU, float64 keeps cuDNN from running it in TF32.
    conv_dtype = torch.float32 if x.device.type == "cpu" else torch.float64
    k = _gaussian_kernel2d(sigma, conv_dtype).to(x.device)
    c = x.shape[1]
    half = (k.shape[0] - 1) // 2
    padded = F.pad(x.to(conv_dtype), (half, half, half, half), mode="reflect")
    return F.conv2d(padded, k.expand(c, 1, -1, -1), groups=c).to(torch.float32)


def synthesize(
    t: torch.Tensor,
    r: torch.Tensor,
    sigma: float,
    att: float,
    alpha: float,
    offset: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (R_out, I): the vignetted blurred reflection and the mixture, both sRGB, like t."""
    if t.shape != r.shape or t.dim() not in (3, 4) or t.shape[-3] != 3:
        shapes = f"{tuple(t.shape)}, {tuple(r.shape)}"
        raise ValueError(f"expected t, r of equal shape (3,H,W) or (N,3,H,W), got {shapes}")
    out_dtype = t.dtype
    single = t.dim() == 3
    # Clamped so that the gamma never sees a negative value (NaN), e.g. after a resampling overshoot.
    t32 = t.to(torch.float32).clamp(0.0, 1.0)
    r32 = r.to(torch.float32).clamp(0.0, 1.0)
    if single:
        t32, r32 = t32[None], r32[None]
    h, w = t32.shape[-2:]

    t_lin = t32.pow(_GAMMA)
    r_blur = _blur(r32.pow(_GAMMA), sigma)

    # Overflow compensation: shift the reflection down by how far the blend overshoots 1 on average
    # (per image and channel; no shift where nothing overflows). Summed in float64, then rounded to
    # float32 so the mean does not depend on the reduction order (see module docstring).
    blend = r_blur + t_lin
    over = blend > 1.0
    total = (blend.to(torch.float64) * over).sum(dim=(-2, -1)).to(torch.float32)
    count = over.sum(dim=(-2, -1)).to(torch.float32)
    m = (total / (count + 1e-6)).clamp(min=1.0)
    shift = ((m - 1.0) * att)[..., None, None]
    r_blur = (r_blur - shift).clamp(0.0, 1.0)

    a1 = vignette_window(h, w, offset).to(device=r_blur.device)
    r_mask = r_blur.to(torch.float64) * a1
    i_lin = r_mask + (t_lin * alpha).to(torch.float64)

    r_out = r_mask.pow(1.0 / _GAMMA)
    i = i_lin.pow(1.0 / _GAMMA).clamp(0.0, 1.0)
    if single:
        r_out, i = r_out[0], i[0]
    return r_out.to(out_dtype), i.to(out_dtype)


def draw_params(
    h: int,
    w: int,
    generator: torch.Generator,
    sigma_min: float = 2.0,
    sigma_max: float = 5.0,
) -> SynthParams:
    """Return randomly drawn SynthParams for an HxW image, using only `generator`."""
    choices = sigma_choices(sigma_min, sigma_max)
    idx = int(torch.randint(0, choices.numel(), (1,), generator=generator).item())
    sigma = float(choices[idx])

    u_att = float(torch.rand(1, generator=generator, dtype=torch.float64).item())
    # Rounding of 1.08 + u/10 could reach 1.18 for u just below 1; keep the interval half-open.
    att = min(1.08 + u_att / 10.0, math.nextafter(1.18, 0.0))

    side = _mask_side(h, w)
    y = int(torch.randint(0, _offset_high(h, side), (1,), generator=generator).item())
    x = int(torch.randint(0, _offset_high(w, side), (1,), generator=generator).item())

    u_alpha = float(torch.rand(1, generator=generator, dtype=torch.float64).item())
    # Same rounding concern at the open end 0.8.
    alpha = max(1.0 - u_alpha / 5.0, math.nextafter(0.8, 1.0))
    return SynthParams(sigma=sigma, att=att, alpha=alpha, offset=(y, x))


def is_rejected(t: torch.Tensor, r: torch.Tensor, r_out: torch.Tensor, i: torch.Tensor) -> bool:
    """Return True when the mixture should be redrawn (docs/method.md §5 step 7; any image of a batch)."""

    def per_image(x: torch.Tensor) -> torch.Tensor:
        # (3,H,W) -> (1, -1); (N,3,H,W) -> (N, -1), so each criterion is judged per image.
        return x.detach().to(torch.float64).reshape(1 if x.dim() == 3 else x.shape[0], -1)

    t2, r2, ro2, i2 = per_image(t), per_image(r), per_image(r_out), per_image(i)
    bad = (
        (t2.mean(dim=1) / 2.0 > r2.mean(dim=1))
        | (t2.amax(dim=1) < 0.15)
        | (ro2.amax(dim=1) < 0.15)
        | (i2.amax(dim=1) < 0.1)
    )
    return bool(bad.any())
