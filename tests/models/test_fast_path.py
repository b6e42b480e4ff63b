"""models/fast_path.py: --channels_last auto picks the memory format per phase and device; on/off and alone."""

from __future__ import annotations

import pytest
import torch

from models.fast_path import channels_last_rule, resolve_channels_last
from options.model_config import create_model
from util.errors import UserError
from util.machine import cpu_has_native_bf16

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize(("device", "phase", "amp", "capability", "expected"), [
    (CPU, "test", False, "AVX2", True),       # CPU inference in fp32: channels_last was faster on both CPUs
    (CPU, "test", False, "AVX512", True),
    (CPU, "train", False, "AVX2", False),     # CPU training in fp32: slower without AVX-512,
    (CPU, "train", False, "DEFAULT", False),  # (not measured: the released layout)
    (CPU, "train", False, "AVX512", True),    # faster with it
    (CPU, "train", True, "AVX512", True),     # bf16 autocast: channels_last in both phases
    (CPU, "test", True, "AVX512", True),
    (CUDA, "test", False, "AVX2", False),     # CUDA fp32: the released NCHW (not measured on a GPU)
    (CUDA, "train", True, "AVX2", True),      # CUDA autocast: NHWC tensor-core kernels
])
def test_rule_per_phase_and_machine(monkeypatch, device, phase, amp, capability, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    on, why = channels_last_rule(device, phase, amp)
    assert on is expected and why


def test_explicit_values_win_and_bad_ones_are_user_errors():
    assert resolve_channels_last("on", CPU, "train") == (True, "asked for")
    assert resolve_channels_last("off", CPU, "test") == (False, "asked for")
    assert resolve_channels_last(True, CPU, "train")[0] is True
    with pytest.raises(UserError, match="--channels_last maybe"):
        resolve_channels_last("maybe", CPU, "test")


def test_test_py_defaults_to_auto_and_training_to_nchw(make_options, tmp_path, capsys, no_perceptual_net):
    model = create_model(make_options("test", "--dataroot", str(tmp_path), "--name", "t"))
    assert model.channels_last is True and model.netG_T.conv1[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert "--channels_last auto: on (CPU fp32 inference" in capsys.readouterr().out
    assert create_model(make_options("test", "--dataroot", str(tmp_path), "--name", "t", "--channels_last",
                                     "off")).channels_last is False
    assert create_model(make_options("train", "--dataroot", str(tmp_path), "--name", "t")).channels_last is False
    # The flag alone still means on (the command lines written before auto existed).
    alone = make_options("train", "--dataroot", str(tmp_path), "--name", "t", "--channels_last")
    assert alone.channels_last == "on" and create_model(alone).channels_last is True


def test_training_auto_follows_the_rule_on_this_machine(make_options, tmp_path, no_perceptual_net):
    auto = create_model(make_options("train", "--dataroot", str(tmp_path), "--name", "t", "--channels_last", "auto"))
    assert auto.channels_last is channels_last_rule(CPU, "train")[0]
    if cpu_has_native_bf16():
        amp = create_model(make_options("train", "--dataroot", str(tmp_path), "--name", "t", "--channels_last",
                                        "auto", "--amp"))
        assert amp.channels_last is True
