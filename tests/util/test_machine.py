"""util/machine.py's probes: bfloat16 support asked of the GPU in question (a mocked torch.cuda on the CPU)."""

from __future__ import annotations

import pytest
import torch

from models.ibcln_model import resolve_amp
from util import machine


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
