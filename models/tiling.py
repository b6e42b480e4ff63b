"""Tiled inference for large test images: overlapping tiles, each run through the cascade, blended linearly.

Memory then grows with the tile, not with the image. The result differs from a whole-image run: IBCLN's
receptive field (the dilated convolutions at 1/4 scale, three cascade steps and the LSTM state) spans
hundreds of pixels, so a tile sees less context than the whole image; the linear blending in the overlaps
hides the seams. docs/performance.md, "Large images", gives the measured difference (PSNR of tiled against whole).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from util.errors import UserError

MULTIPLE = 4  # the network needs H and W divisible by 4; tile offsets that are multiples of 4 keep every scale aligned


def check_tiling(tile: int, overlap: int) -> None:
    """Raise UserError unless tile (> 0) and overlap are multiples of 4 with 0 <= overlap <= tile / 2."""
    if tile <= 0 or tile % MULTIPLE:
        raise UserError(f"--tile {tile}: expected a positive multiple of {MULTIPLE} (or 0 for no tiling)")
    if overlap < 0 or overlap % MULTIPLE or 2 * overlap > tile:
        raise UserError(f"--tile_overlap {overlap}: expected a multiple of {MULTIPLE} between 0 and half the tile "
                        f"({tile // 2})")


def half_tile(tile: int) -> int:
    """Return half of tile rounded down to a multiple of 4: the largest overlap a tile allows."""
    return tile // 2 // MULTIPLE * MULTIPLE


def fit_overlap(tile: int, overlap: int) -> int:
    """Return overlap shrunk, where the tile is small, to at most half the tile (a multiple of 4)."""
    return min(overlap, half_tile(tile))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Return the start offsets of tiles of size min(tile, length) covering [0, length), the last one at the end.

    Neighbouring tiles overlap by at least `overlap` pixels (more for the last one when the stride does not fit).
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def blend_weights(length: int, tile: int, starts: list[int]) -> list[Tensor]:
    """Return one weight vector per tile along an axis: linear ramps across each overlap, normalised to sum to 1.

    A ramp goes from about 0 at a tile's inner edge to 1 at the far edge of the overlap, so each pixel is a
    convex combination of the tiles that cover it, and a pixel covered by one tile takes it unchanged.
    """
    size = min(tile, length)
    raw = []
    for k, start in enumerate(starts):
        pos = torch.arange(start, start + size, dtype=torch.float64) + 0.5
        weight = torch.ones(size, dtype=torch.float64)
        if k > 0:
            ramp = starts[k - 1] + size - start  # overlap with the previous tile
            weight = torch.minimum(weight, (pos - start) / ramp)
        if k < len(starts) - 1:
            ramp = start + size - starts[k + 1]  # overlap with the next tile
            weight = torch.minimum(weight, (start + size - pos) / ramp)
        raw.append(weight)
    total = torch.zeros(length, dtype=torch.float64)
    for start, weight in zip(starts, raw):
        total[start:start + size] += weight
    return [weight / total[start:start + size] for start, weight in zip(starts, raw)]


def tiled_cascade(cascade: Callable[[Tensor], tuple[list[Tensor], list[Tensor]]], image: Tensor, tile: int,
                  overlap: int) -> tuple[list[Tensor], list[Tensor]]:
    """Return ([T_0..T_n], [R_0..R_n]) of `cascade` run tile by tile over image (N,3,H,W) and blended.

    cascade(crop) returns the lists for one crop (T_0 = crop, R_0 = 0.1 included, unclamped); H and W must
    be multiples of 4. The blend is in float32, whatever the cascade's dtype.
    """
    height, width = image.shape[-2:]
    if height % MULTIPLE or width % MULTIPLE:
        raise ValueError(f"tiled inference needs H and W divisible by {MULTIPLE}, got {height}x{width}")
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    wys, wxs = blend_weights(height, tile, ys), blend_weights(width, tile, xs)
    th, tw = min(tile, height), min(tile, width)
    acc_T: list[Tensor] = []
    acc_R: list[Tensor] = []
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            crop = image[..., y:y + th, x:x + tw]
            fake_Ts, fake_Rs = cascade(crop)
            weight = (wy[:, None] * wx[None, :]).to(device=image.device, dtype=torch.float32)
            if not acc_T:
                shape = (*image.shape[:-2], height, width)
                acc_T = [image.new_zeros(shape, dtype=torch.float32) for _ in fake_Ts[1:]]
                acc_R = [image.new_zeros(shape, dtype=torch.float32) for _ in fake_Rs[1:]]
            for acc, out in zip(acc_T + acc_R, fake_Ts[1:] + fake_Rs[1:]):
                acc[..., y:y + th, x:x + tw] += out.float() * weight
    return [image, *acc_T], [torch.full_like(image, 0.1), *acc_R]
