"""DataParallel (models/parallel.py, --gpu_ids 0,1 without torchrun): the parts of its contract that a CPU can run."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from models.networks import NLayerDiscriminator
from models.parallel import DataParallel, place_net, with_autocast_of_caller


@pytest.fixture
def scatter_on_the_cpu(monkeypatch):
    """Make torch's Scatter split tensors on the CPU as it does across GPUs: tensor.chunk(len(devices), dim)."""
    from torch.nn.parallel._functions import Scatter

    monkeypatch.setattr(Scatter, "apply", staticmethod(lambda devices, sizes, dim, t: t.chunk(len(devices), dim)))


def _data_parallel(net: nn.Module, wrapper: type = DataParallel) -> nn.DataParallel:
    dp = wrapper(net)
    dp.dim = 0  # without an accelerator torch leaves DataParallel unconfigured; these are its GPU settings
    dp.src_device_obj = torch.device("cpu")
    return dp


@pytest.mark.parametrize(("batch", "chunks"), [(1, 1), (3, 2), (4, 2)])
def test_data_parallel_calls_only_replicas_that_received_samples(generators, scatter_on_the_cpu, batch, chunks):
    g_t, _ = generators
    x = torch.rand(batch, 9, 16, 16)
    inputs, kwargs = _data_parallel(g_t).scatter((x, None, None), {"heads": True}, [0, 1])
    assert len(inputs) == len(kwargs) == chunks
    with torch.no_grad():
        outputs = [g_t(*args, **kw) for args, kw in zip(inputs, kwargs)]
    assert sum(out[0].shape[0] for out in outputs) == batch and all(out[3] is not None for out in outputs)


def test_torch_data_parallel_would_call_a_replica_without_input(generators, scatter_on_the_cpu):
    # What the subclass fixes: torch pads the inputs with () for the second GPU but keeps its keywords.
    g_t, _ = generators
    inputs, kwargs = _data_parallel(g_t, nn.DataParallel).scatter((torch.rand(1, 9, 16, 16), None, None),
                                                                  {"heads": False}, [0, 1])
    assert len(inputs) == 2 and inputs[1] == ()
    with pytest.raises(TypeError, match="x"):
        g_t(*inputs[1], **kwargs[1])


def _like_torch_worker(fn, *args) -> dict:
    """Run fn(*args) in a new thread the way torch's parallel_apply worker does (autocast 'enabled' only)."""
    enabled, result = torch.is_autocast_enabled("cpu"), {}

    def worker() -> None:
        with torch.autocast("cpu", enabled=enabled):
            result["out"] = fn(*args)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    return result


def test_data_parallel_replicas_run_in_the_callers_autocast_dtype(monkeypatch):
    # On the CPU autocast's default dtype is bfloat16 (CUDA's is float16): a caller in float16 plays the part
    # of a CUDA caller in bfloat16. Autocast's dtype is per thread, its default is what a worker thread sees.
    conv = nn.Conv2d(3, 4, 3)

    def replica(x):
        return torch.get_autocast_dtype("cpu"), conv(x).dtype

    x = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.float16):
        assert _like_torch_worker(lambda: torch.get_autocast_dtype("cpu"))["out"] == torch.bfloat16
        (wrapped,) = with_autocast_of_caller([replica], "cpu")
        assert _like_torch_worker(wrapped, x)["out"] == (torch.float16, torch.float16)
    assert with_autocast_of_caller([replica], "cpu") == [replica]  # no autocast: replicas untouched
    # DataParallel.parallel_apply hands torch the wrapped replicas.
    seen = {}
    monkeypatch.setattr(nn.DataParallel, "parallel_apply",
                        lambda self, replicas, inputs, kwargs: [_like_torch_worker(r, *a)["out"]
                                                                for r, a in zip(replicas, inputs)])
    with torch.autocast("cpu", dtype=torch.float16):
        seen["out"] = _data_parallel(conv).parallel_apply([replica], [(x,)], [{}])
    assert seen["out"] == [(torch.float16, torch.float16)]


def test_place_net_wraps_in_the_data_parallel_subclass(monkeypatch):
    net = NLayerDiscriminator()
    monkeypatch.setattr(nn.Module, "to", lambda self, *args, **kwargs: self)  # no GPU here to move to
    assert type(place_net(net, [0, 1])) is DataParallel
    assert place_net(net, [0]) is net and place_net(net, []) is net
