"""models/memory.py: the peak-memory estimate and --tile auto's plan; util/machine.py: the memory available."""

from __future__ import annotations

import sys
from pathlib import Path

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


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_cgroups(monkeypatch, tmp_path: Path, proc: str) -> Path:
    root = tmp_path / "cgroup"
    monkeypatch.setattr(machine, "CGROUP_MOUNTS", (
        (str(root), "", "memory.max", "memory.current"),
        (str(root / "memory"), "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")))
    write(tmp_path / "proc_cgroup", proc)
    monkeypatch.setattr(machine, "PROC_SELF_CGROUP", str(tmp_path / "proc_cgroup"))
    return root


def test_cgroup_v1_limit_on_an_ancestor(monkeypatch, tmp_path):
    root = fake_cgroups(monkeypatch, tmp_path, "9:memory:/jobs/42\n1:name=systemd:/\n")
    write(root / "memory" / "memory.limit_in_bytes", str(2**63 - 4096))  # the root: no limit
    write(root / "memory" / "memory.usage_in_bytes", "0")
    write(root / "memory" / "jobs" / "memory.limit_in_bytes", str(8 * 2**30))
    write(root / "memory" / "jobs" / "memory.usage_in_bytes", str(3 * 2**30))
    write(root / "memory" / "jobs" / "42" / "memory.limit_in_bytes", str(2**63 - 4096))
    write(root / "memory" / "jobs" / "42" / "memory.usage_in_bytes", str(2**30))
    assert machine.cgroup_headroom() == 5 * 2**30


def test_cgroup_v2_takes_the_tightest_level_and_ignores_max(monkeypatch, tmp_path):
    root = fake_cgroups(monkeypatch, tmp_path, "0::/user/session\n")
    write(root / "user" / "session" / "memory.max", "max")
    write(root / "user" / "session" / "memory.current", str(2**30))
    write(root / "user" / "memory.max", str(6 * 2**30))
    write(root / "user" / "memory.current", str(2 * 2**30))
    assert machine.cgroup_headroom() == 4 * 2**30
    write(root / "user" / "memory.max", "max")
    assert machine.cgroup_headroom() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo (Linux)")
def test_available_ram_is_known_and_positive_here():
    available = machine.cpu_available_bytes()
    assert available is not None and 0 < available <= machine._read_meminfo()["MemTotal"]
    assert machine.available_bytes(CPU)[1] == "RAM"
