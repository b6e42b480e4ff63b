"""--tile auto: the peak memory of an inference pass, the memory there is, and the tile size that fits.

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

import math
import os
from dataclasses import dataclass

import torch

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


def available_bytes(device: torch.device) -> tuple[int | None, str]:
    """Return (bytes available to this process on device, or None where unknown; 'RAM' or the GPU's name)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds but does not use count as free for this process.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached, torch.cuda.get_device_name(device)
    return cpu_available_bytes(), "RAM"


def cpu_available_bytes() -> int | None:
    """Return the RAM this process can use: MemAvailable, or less under a container (cgroup) limit; None: unknown."""
    candidates = []
    meminfo = _read_meminfo()
    if "MemAvailable" in meminfo:
        candidates.append(meminfo["MemAvailable"])
    elif hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    headroom = cgroup_headroom()
    if headroom is not None:
        candidates.append(headroom)
    return min(candidates) if candidates else None


# (mount point, controller name in /proc/self/cgroup ("" for cgroup v2), limit file, usage file)
CGROUP_MOUNTS = (("/sys/fs/cgroup", "", "memory.max", "memory.current"),
                 ("/sys/fs/cgroup/memory", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"))
PROC_SELF_CGROUP = "/proc/self/cgroup"


def cgroup_headroom() -> int | None:
    """Return limit - usage of the tightest memory cgroup (v2 or v1) holding this process, or None without a limit.

    A container's or job's memory limit bounds the process below what the host has free. The limit may be set
    on the process's own cgroup or on any ancestor, so each level up to the mount point is read; in a
    container the mount point is usually the container's own cgroup.
    """
    own = _own_cgroups()
    tightest = None
    for mount, controller, limit_file, usage_file in CGROUP_MOUNTS:
        if controller not in own:
            continue
        folder = os.path.normpath(mount + "/" + own[controller].lstrip("/"))
        while folder.startswith(mount):
            limit, usage = _read_int(os.path.join(folder, limit_file)), _read_int(os.path.join(folder, usage_file))
            # cgroup v1 reports "no limit" as a huge number (about 2^63); v2 as "max", which reads as None.
            if limit is not None and usage is not None and limit < 2**60:
                headroom = max(0, limit - usage)
                tightest = headroom if tightest is None else min(tightest, headroom)
            if folder == mount:
                break
            folder = os.path.dirname(folder)
    return tightest


def _own_cgroups() -> dict[str, str]:
    """Return this process's cgroup path per hierarchy: "" -> path for cgroup v2, "memory" -> path for v1."""
    paths = {}
    try:
        with open(PROC_SELF_CGROUP) as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


def _read_meminfo() -> dict[str, int]:
    """Return /proc/meminfo's fields in bytes (empty where there is no such file)."""
    fields = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return fields


def _read_int(path: str) -> int | None:
    """Return the integer in a one-line file, or None (missing, unreadable, or not a number such as 'max')."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def plan_tiles(batch: int, height: int, width: int, device: torch.device, ngf: int, overlap: int) -> TilePlan:
    """Return the TilePlan of --tile auto for a (batch, 3, height, width) input (H, W multiples of 4).

    Whole image when its estimated peak fits in HEADROOM of the available memory (or when that memory is
    unknown); else the largest tile (a multiple of 4, at least MIN_TILE and twice the overlap) whose
    estimate fits, the overlap shrunk to half a tile where the tile is small.
    """
    pixels = batch * height * width
    estimate = whole_image_bytes(pixels, ngf)
    available, where = available_bytes(device)
    if available is None or estimate <= HEADROOM * available or max(height, width) <= MIN_TILE:
        return TilePlan(0, overlap, estimate, available, where)
    budget = HEADROOM * available - TILED_BYTES_PER_PIXEL * pixels - WHOLE_FIXED_BYTES
    per_tile_pixel = WHOLE_BYTES_PER_PIXEL * ngf / REFERENCE_NGF * batch
    side = math.sqrt(budget / per_tile_pixel) if budget > 0 else 0.0
    tile = max(MIN_TILE, int(side) // 4 * 4)
    return TilePlan(tile, min(overlap, tile // 2 // 4 * 4), estimate, available, where)
