"""models/networks.py and run_cascade: checkpoint layout, shapes, init, the VGG19 loss network, the reflection pad."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import FIXTURES
from torch import nn

from models.ibcln_model import run_cascade
from models.networks import (
    ConvLSTMGenerator,
    NLayerDiscriminator,
    ReflectionPad2d,
    VGGFeatures,
    init_weights,
    load_vgg_features,
)
from util.errors import UserError


def _key_list(net: nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in net.state_dict().items()]


def test_generator_state_dict_matches_released_keys():
    expected = json.loads((FIXTURES / "generator_keys.json").read_text())
    assert _key_list(ConvLSTMGenerator()) == expected


def test_discriminator_state_dict_matches_released_keys():
    expected = json.loads((FIXTURES / "discriminator_keys.json").read_text())
    assert _key_list(NLayerDiscriminator()) == expected


def test_discriminator_output_is_a_patch_map():
    out = NLayerDiscriminator()(torch.rand(2, 3, 64, 64))
    # 64 -> 32 -> 16 -> 8 (stride 2 x3) -> 7 -> 6 (4x4 stride 1, pad 1).
    assert out.shape == (2, 1, 6, 6)


@pytest.mark.parametrize(("height", "width", "batch"), [(32, 48, 2), (64, 64, 1), (44, 28, 1)])
def test_cascade_output_shapes(generators, height, width, batch):
    g_t, g_r = generators
    real_I = torch.rand(batch, 3, height, width)
    with torch.no_grad():
        fake_Ts, fake_Rs, half, quarter = run_cascade(g_t, g_r, real_I)
    assert len(fake_Ts) == 4 and len(fake_Rs) == 4
    assert fake_Ts[0] is real_I
    assert torch.equal(fake_Rs[0], torch.full_like(real_I, 0.1))
    for t, r in zip(fake_Ts, fake_Rs):
        assert t.shape == (batch, 3, height, width)
        assert r.shape == (batch, 3, height, width)
    assert half.shape == (batch, 3, height // 2, width // 2)
    assert quarter.shape == (batch, 3, height // 4, width // 4)


@pytest.mark.parametrize(("height", "width"), [(32, 48), (44, 28)])
def test_generator_state_shapes(generators, height, width):
    g_t, _ = generators
    x = torch.rand(1, 9, height, width)
    h0 = c0 = torch.zeros(1, 256, height // 4, width // 4)  # the zero state, given explicitly
    with torch.no_grad():
        out, h, c, half, quarter = g_t(x, h0, c0)
    assert out.shape == (1, 3, height, width)
    assert h.shape == c.shape == (1, 256, height // 4, width // 4)
    assert half.shape == (1, 3, height // 2, width // 2)
    assert quarter.shape == (1, 3, height // 4, width // 4)
    # The LSTM state carries information: h = o * tanh(c) is bounded by 1 and was updated from zero.
    assert h.abs().max() <= 1 and c.abs().sum() > 0


@pytest.mark.parametrize(("height", "width"), [(30, 32), (32, 30), (34, 34), (4, 6)])
def test_cascade_rejects_sizes_not_divisible_by_4(generators, height, width):
    g_t, g_r = generators
    with pytest.raises(ValueError, match="divisible by 4"):
        run_cascade(g_t, g_r, torch.rand(1, 3, height, width))


def test_lstm_state_follows_input_dtype_and_device():
    gen = ConvLSTMGenerator().double().eval()
    x = torch.rand(1, 9, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        _, h, c, _, _ = gen(x)  # the zero state (None) of the first step
    assert h.dtype == c.dtype == torch.float64
    assert h.device == c.device == x.device
    with torch.no_grad():
        fake_Ts, fake_Rs, half, quarter = run_cascade(gen, gen, x[:, :3])
    assert all(t.dtype == torch.float64 for t in (*fake_Ts, *fake_Rs, half, quarter))


def test_init_weights_normal_002_and_zero_bias():
    torch.manual_seed(3)
    nets = [ConvLSTMGenerator(), NLayerDiscriminator()]
    weights = []
    for net in nets:
        init_weights(net, "normal", 0.02)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                assert torch.count_nonzero(m.bias) == 0
                w = m.weight.detach().flatten()
                weights.append(w)
                if w.numel() >= 20000:  # large layers: each one is normal(0, 0.02) on its own
                    assert abs(w.mean().item()) < 1e-3
                    assert 0.019 < w.std().item() < 0.021
    everything = torch.cat(weights)
    assert abs(everything.mean().item()) < 1e-4
    assert abs(everything.std().item() - 0.02) < 2e-4
    # Normal rather than, say, uniform: about 68.3% of the values within one std.
    within = (everything.abs() < 0.02).double().mean().item()
    assert abs(within - 0.6827) < 0.005


def test_init_weights_gain_is_used():
    net = NLayerDiscriminator()
    init_weights(net, "normal", 0.5)
    assert 0.45 < net.model[8].weight.std().item() < 0.55


@pytest.fixture(scope="module")
def random_vgg() -> VGGFeatures:
    with pytest.warns(UserWarning, match="random"):
        return load_vgg_features("random")


def test_vgg_random_warns_and_is_frozen_layers_0_to_6(random_vgg):
    vgg = random_vgg
    assert isinstance(vgg, VGGFeatures)
    assert len(vgg.layers) == 7
    kinds = [type(m).__name__ for m in vgg.layers]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU"]
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    feats = vgg(torch.rand(2, 3, 32, 24))
    assert len(feats) == 2
    assert feats[0].shape == (2, 64, 32, 24)  # relu1_1
    assert feats[1].shape == (2, 128, 16, 12)  # relu2_1
    assert (feats[0] >= 0).all() and (feats[1] >= 0).all()


def _reference_features(state: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    # Independent of VGGFeatures: the conv/relu/pool sequence of torchvision's vgg19 written out by hand.
    def conv(i: int, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(y, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1)

    relu1_1 = conv(0, x).relu()
    y = conv(2, relu1_1).relu()
    y = torch.nn.functional.max_pool2d(y, 2, 2)
    relu2_1 = conv(5, y).relu()
    return [relu1_1, relu2_1]


def test_vgg_from_local_file(tmp_path, random_vgg):
    # A torchvision vgg19(weights=None) state_dict, cut to the layers the loss uses plus a few others that the
    # loader must ignore (saving all 550 MB of it would dominate the test time).
    source = {f"features.{k.split('.', 1)[1]}": v.clone() for k, v in random_vgg.state_dict().items()}
    torch.manual_seed(5)
    for key in source:
        source[key].normal_(0, 0.1)  # unlike a fresh initialisation, so a loader that ignored the file fails
    extra = {"features.7.weight": torch.randn(128, 128, 3, 3), "classifier.6.bias": torch.randn(1000)}
    path = tmp_path / "vgg19.pth"
    torch.save({**source, **extra}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real file must not warn
        vgg = load_vgg_features(str(path))
    assert len(vgg.layers) == 7
    assert all(not p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        ours = vgg(x)
        ref = _reference_features(source, x)
    assert len(ours) == 2
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(vgg.layers[5].weight, source["features.5.weight"])


def test_vgg_wrong_files_are_user_errors(tmp_path):
    generator_file = tmp_path / "gen.pth"
    torch.save(NLayerDiscriminator().state_dict(), generator_file)
    with pytest.raises(UserError, match="not a torchvision vgg19"):
        load_vgg_features(str(generator_file))
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(UserError, match="features.0.bias"):
        load_vgg_features(str(partial))
    text_file = tmp_path / "notes.pth"
    text_file.write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_vgg_features(str(text_file))
    with pytest.raises(UserError, match="no such file"):
        load_vgg_features(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("padding", [(1, 0, 1, 0), (2, 1, 0, 3)])
def test_reflection_pad_in_deterministic_mode_gives_the_native_values_and_gradients(padding, kernel_flags):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    native = nn.ReflectionPad2d(padding)(x)
    grad_out = torch.randn_like(native)
    (native_grad,) = torch.autograd.grad(native, x, grad_out)
    torch.use_deterministic_algorithms(True)
    ours = ReflectionPad2d(padding)(x)
    (grad,) = torch.autograd.grad(ours, x, grad_out)
    # CUDA has no deterministic reflection-pad backward: in this mode the pad must not use that kernel.
    assert ours.grad_fn.name() != native.grad_fn.name()
    assert torch.equal(ours, native)
    torch.testing.assert_close(grad, native_grad, rtol=0, atol=1e-6)  # the same sums in another order
    torch.use_deterministic_algorithms(False)
    assert ReflectionPad2d(padding)(x).grad_fn.name() == native.grad_fn.name()  # the native kernel otherwise
