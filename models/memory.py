"""--tile auto: the peak memory of an inference pass, and the tile size that fits in the memory there is.

The peak of a whole-image pass grows about linearly with the pixels it runs on. The figures below come from
tools/measure_memory.py (docs/usage.md, "Large images", gives the run and its output): one fresh process
per image size, the increase of its peak RSS over its RSS just before the call, for the authors' width
(ngf 64) in fp32, at 256², 512² and 1024². Least-squares lines: NCHW 142 MiB + 1676 bytes/pixel,
channels_last 137 MiB + 1431 bytes/pixel; the figures below round the larger up so that every measured
point lies under them. Activations scale with ngf, so the per-pixel figure is scaled by ngf / 64 for other
widths; bf16 autocast needs less, so the fp32 figure is an upper bound there. On a GPU the same figures
are used: they were not measured there (no GPU was available), and a CUDA out-of-memory error makes the
API retry with smaller tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from util import machine

from . import tiling

# Whole-image pass at ngf 64, fp32: peak increase = WHOLE_FIXED_BYTES + WHOLE_BYTES_PER_PIXEL * pixels.
WHOLE_BYTES_PER_PIXEL = 1700
WHOLE_FIXED_BYTES = 256 * 2**20
# A tiled pass keeps full-size float32 RGB planes besides the tile's own peak: the padded input, the blend
# accumulators of T_1..T_3 and R_1..R_3, the clamped copies of every step, the caller's copies. Measured:
# 189 (NCHW) and 197 (channels_last) bytes per image pixel, 2048² in 256² tiles, rounded up.
TILED_BYTES_PER_PIXEL = 250
# Plan to use at most this share of the memory available: other processes, the allocator's fragmentation
# and the figures' spread need the rest.
HEADROOM = 0.75
MIN_TILE = 256
REFERENCE_NGF = 64


@dataclass(frozen=True)
class TilePlan:
    """How an image is run: tile size (0 = whole image), tile overlap, and the numbers behind an automatic choice."""

    tile: int
    overlap: int
    estimate: int | None = None  # bytes a whole-image pass would add at its peak
    available: int | None = None  # bytes available when the plan was made
    where: str = ""  # "RAM" or the GPU's name

    def describe(self, height: int, width: int) -> str:
        """Return one line saying whether and why the image is tiled."""
        size = f"{width}x{height}"
        if self.estimate is None or self.available is None:
            return f"{size}: tiles of {self.tile} px" if self.tile else f"{size}: whole image"
        numbers = (f"a whole-image pass needs ~{gib(self.estimate)}, {gib(self.available)} of {self.where} "
                   f"available")
        if self.tile:
            return f"{size}: tiles of {self.tile} px, overlap {self.overlap} ({numbers})"
        return f"{size}: whole image ({numbers})"


def gib(n_bytes: float) -> str:
    """Return a byte count as 'x.y GiB'."""
    return f"{n_bytes / 2**30:.1f} GiB"


def whole_image_bytes(pixels: int, ngf: int = REFERENCE_NGF) -> int:
    """Return the estimated peak memory a whole-image pass adds for `pixels` (N x H x W) at width ngf."""
    return int(WHOLE_FIXED_BYTES + WHOLE_BYTES_PER_PIXEL * ngf / REFERENCE_NGF * pixels)


def tiled_bytes(pixels: int, tile_pixels: int, ngf: int = REFERENCE_NGF) -> int:
    """Return the estimated peak memory a tiled pass adds: one tile's pass plus the full-size buffers."""
    return whole_image_bytes(tile_pixels, ngf) + TILED_BYTES_PER_PIXEL * pixels


def plan_tiles(batch: int, height: int, width: int, device: torch.device, ngf: int, overlap: int) -> TilePlan:
    """Return the TilePlan of --tile auto for a (batch, 3, height, width) input (H, W multiples of 4).

    Whole image when its estimated peak fits in HEADROOM of the available memory (or when that memory is
    unknown); else the largest tile (a multiple of 4, at least MIN_TILE and twice the overlap) whose
    estimate fits, the overlap shrunk to half a tile where the tile is small.
    """
    pixels = batch * height * width
    estimate = whole_image_bytes(pixels, ngf)
    available, where = machine.available_bytes(device)
    if available is None or estimate <= HEADROOM * available or max(height, width) <= MIN_TILE:
        return TilePlan(0, overlap, estimate, available, where)
    sizes = range(MIN_TILE, max(height, width) + 1, tiling.MULTIPLE)
    fitting = [t for t in sizes if tiled_bytes(pixels, batch * t * t, ngf) <= HEADROOM * available]
    tile = fitting[-1] if fitting else MIN_TILE
    return TilePlan(tile, tiling.fit_overlap(tile, overlap), estimate, available, where)
