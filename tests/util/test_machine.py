"""util/machine.py's probes: bfloat16 support asked of the GPU in question (a mocked torch.cuda on the CPU), the
memory available (cgroup limits, /proc/meminfo)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from models.ibcln_model import resolve_amp
from util import machine

CPU = torch.device("cpu")


@pytest.fixture
def two_gpus(monkeypatch) -> list[int]:
    """Make torch see GPU 0 with native bf16 (capability 8.0) and GPU 1 without (7.5); return the indices asked."""
    asked: list[int] = []
    capabilities = {0: (8, 0), 1: (7, 5)}

    def get_device_capability(device=None):
        index = device if isinstance(device, int) else 0 if device is None else torch.device(device).index
        asked.append(index)
        return capabilities[index]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    return asked


def test_native_bf16_is_a_property_of_the_device_asked_about(two_gpus):
    assert machine.cuda_has_native_bf16(torch.device("cuda", 0))
    assert not machine.cuda_has_native_bf16(torch.device("cuda", 1))
    assert not machine.cuda_has_native_bf16(1)
    assert two_gpus == [0, 1, 1]


def test_amp_auto_picks_the_dtype_of_the_models_own_gpu(two_gpus):
    assert resolve_amp("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_amp("auto", torch.device("cuda", 1)) == torch.float16  # with loss scaling when training
    assert two_gpus == [0, 1]


def test_no_cuda_means_no_native_bf16_without_asking_a_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: pytest.fail("asked a GPU"))
    assert not machine.cuda_has_native_bf16(torch.device("cuda", 0))


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
