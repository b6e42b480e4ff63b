"""Every tensor of the CUDA paths lands on the GPU: the cascade, the losses and the test path on fake CUDA tensors.

torch's FakeTensorMode gives tensors a device without allocating memory, also "cuda" on a machine without
one, and raises when a tensor on the CPU meets them. The model is built on the CPU and its networks moved
to cuda:0 inside the mode, as place_net would move them; every tensor its forward, losses and test path
create must then follow. A backward pass needs a real device: it is not run here (tests/test_cuda.py does
on a GPU), and neither is --amp (autocast refuses "cuda" without a GPU).
"""

from __future__ import annotations

import types
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from options.model_config import create_model

CUDA = torch.device("cuda", 0)


def _on_fake_cuda(model, mode: FakeTensorMode):
    """Return model with its networks and loss modules moved to fake cuda:0 and its device set to it."""
    with mode:
        for value in vars(model).values():
            if isinstance(value, torch.nn.Module):
                value.to(CUDA)
    model.device, model.gpu_ids = CUDA, [0]
    return model


def _model(make_options, tmp_path, phase: str, *flags: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        return create_model(make_options(phase, "--dataroot", str(tmp_path), "--name", "fake", *flags))


@pytest.mark.parametrize("flags", [(), ("--channels_last", "--fused_gates")])
def test_training_forward_losses_and_validation_stay_on_the_gpu(make_options, tmp_path, flags):
    # allow_non_fake_inputs: real CPU tensors enter the mode as fake CPU tensors, so a batch from the data
    # loader (on the CPU) must be moved by set_input, and any CPU tensor that meets a CUDA one raises.
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _on_fake_cuda(_model(make_options, tmp_path, "train", *flags), mode)
    t = torch.rand(2, 3, 32, 32)
    resize = torch.nn.functional.interpolate
    batch = {"I": (0.7 * t + 0.2).clamp(0, 1), "T": t, "T2": resize(t, scale_factor=0.5),
             "T4": resize(t, scale_factor=0.25), "alpha": [0.7, 0.9], "isNatural": torch.tensor([False, True])}
    with mode:
        model.set_input(batch)
        model.forward()
        model.compute_loss_D()
        model._scaled = lambda loss: types.SimpleNamespace(backward=lambda: None)  # no backward on fake tensors
        model.backward_G()
        losses = model.current_loss_values()
        model.eval()
        model.test(scored_only=True)
        # The mode does catch a CPU tensor meeting a CUDA one.
        with pytest.raises(FakeTensorDeviceMismatchError):
            model.fake_Ts[-1] + torch.ones(3, 1, 1)
    tensors = [model.real_I, model.alpha, model.synthetic, losses, *model.fake_Ts, *model.fake_Rs]
    assert all(x.device == CUDA for x in tensors)
    assert all(getattr(model, "loss_" + name).device == CUDA for name in model.loss_names)


@pytest.mark.parametrize("flags", [(), ("--tile", "32", "--tile_overlap", "8")])
def test_test_path_stays_on_the_gpu(make_options, tmp_path, flags):
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _on_fake_cuda(_model(make_options, tmp_path, "test", *flags), mode)
    model.eval()
    image = torch.rand(1, 3, 48, 64)
    with mode:
        model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=bool),
                         "orig_size": ([46], [62])})
        model.test()
    assert all(x.device == CUDA and x.shape == (1, 3, 46, 62) for x in model.fake_Ts + model.fake_Rs)
