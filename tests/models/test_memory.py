"""models/memory.py: the peak-memory estimate and --tile auto's plan."""

from __future__ import annotations

import pytest
import torch

from models import memory
from util import machine

CPU = torch.device("cpu")


def test_estimate_is_linear_in_pixels_and_scales_with_the_width():
    one = memory.whole_image_bytes(10**6)
    assert memory.whole_image_bytes(2 * 10**6) - one == memory.WHOLE_BYTES_PER_PIXEL * 10**6
    assert memory.whole_image_bytes(10**6, ngf=32) - memory.WHOLE_FIXED_BYTES == (one - memory.WHOLE_FIXED_BYTES) / 2
    # 3000x2000 at the authors' width: about 10 GB (9.1 GiB peak RSS measured for the whole command).
    assert 9.5 * 2**30 < memory.whole_image_bytes(3000 * 2000) < 10 * 2**30


def plan_with(monkeypatch, available: int | None, *size: int, ngf: int = 64) -> memory.TilePlan:
    monkeypatch.setattr(machine, "available_bytes", lambda device: (available, "RAM"))
    return memory.plan_tiles(*size, CPU, ngf, 128)


def test_whole_image_when_it_fits_or_when_memory_is_unknown(monkeypatch):
    assert plan_with(monkeypatch, 64 * 2**30, 1, 2000, 3000).tile == 0
    assert plan_with(monkeypatch, None, 1, 8000, 8000).tile == 0
    assert plan_with(monkeypatch, 1, 1, 256, 200).tile == 0  # nothing smaller to tile into


@pytest.mark.parametrize(("available_gib", "batch"), [(8, 1), (4, 1), (8, 2), (2, 1)])
def test_largest_tile_that_fits(monkeypatch, available_gib, batch):
    available = available_gib * 2**30
    plan = plan_with(monkeypatch, available, batch, 4000, 6000)
    assert plan.tile % 4 == 0 and plan.tile >= memory.MIN_TILE and plan.overlap == 128
    assert plan.estimate > memory.HEADROOM * available
    budget = memory.HEADROOM * available
    fits = memory.tiled_bytes(batch * 4000 * 6000, batch * plan.tile**2) <= budget
    bigger_fits = memory.tiled_bytes(batch * 4000 * 6000, batch * (plan.tile + 4) ** 2) <= budget
    assert (fits and not bigger_fits) or plan.tile == memory.MIN_TILE
    assert plan.describe(4000, 6000).startswith(f"6000x4000: tiles of {plan.tile} px, overlap 128 (a whole-image")


def test_descriptions():
    assert memory.TilePlan(0, 128).describe(10, 20) == "20x10: whole image"
    plan = memory.TilePlan(0, 128, estimate=3 * 2**30, available=16 * 2**30, where="RAM")
    assert plan.describe(10, 20) == "20x10: whole image (a whole-image pass needs ~3.0 GiB, 16.0 GiB of RAM available)"
