"""The model's CUDA-related choices, checked on the CPU: --amp's dtype, --compile, cuDNN benchmark, --deterministic.

A CPU reproduces what these depend on: the answers torch gives about the GPU (monkeypatched), the option
combinations refused before any GPU is touched, dynamo's recompiles (decided by its guards, before any
backend runs, so the "eager" backend counts them as inductor would) and the global flags a model sets.
"""

from __future__ import annotations

import functools
import os
import warnings

import pytest
import torch
from helpers import brightened_batch

from models.ibcln_model import RECOMPILE_LIMIT, resolve_amp
from models.networks import ConvLSTMGenerator
from options import base_options
from options.base_options import select_kernels
from options.model_config import create_model
from util import machine
from util.errors import UserError

CUDA = torch.device("cuda", 0)


def _gpu_like(monkeypatch, native: bool) -> None:
    """Make torch see a GPU with (Ampere+, capability 8.0) or without (T4 7.5, V100 7.0) native bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0) if native else (7, 5))


def test_amp_picks_fp16_with_loss_scaling_on_gpus_that_only_emulate_bf16(monkeypatch):
    _gpu_like(monkeypatch, native=False)
    assert not machine.cuda_has_native_bf16(CUDA)
    assert resolve_amp("auto", CUDA) == torch.float16
    assert resolve_amp("fp16", CUDA) == torch.float16
    with pytest.raises(UserError, match=r"--amp bf16: .*no native bfloat16.*use --amp fp16"):
        resolve_amp("bf16", CUDA)
    _gpu_like(monkeypatch, native=True)
    assert resolve_amp("auto", CUDA) == resolve_amp("bf16", CUDA) == torch.bfloat16
    assert resolve_amp("none", CUDA) is None


def _model(make_options, tmp_path, phase: str, *flags: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        torch.manual_seed(0)
        return create_model(make_options(phase, "--dataroot", str(tmp_path), "--name", "opts", *flags))


def test_compile_with_data_parallel_is_refused_before_any_gpu_is_touched(make_options, tmp_path):
    opt = make_options("train", "--dataroot", str(tmp_path), "--name", "dp", "--compile")
    opt.gpu_ids = [0, 1]  # what --gpu_ids 0,1 parses to on a machine with two GPUs
    with pytest.raises(UserError, match=r"^--compile with several --gpu_ids: .*torchrun"):
        create_model(opt)


@pytest.fixture
def eager_dynamo(monkeypatch):
    """Compile with dynamo's "eager" backend, raise instead of falling back at the recompile limit, reset dynamo."""
    import torch._dynamo
    import torch._dynamo.config as dynamo_config

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    # config.patch restores both after the test, also the limit the model raises (monkeypatch cannot undo these).
    with dynamo_config.patch(fail_on_recompile_limit_hit=True, recompile_limit=dynamo_config.recompile_limit):
        yield
    torch._dynamo.reset()


def test_compiled_training_with_validation_stays_compiled(make_options, tmp_path, eager_dynamo):
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    model = _model(make_options, tmp_path, "train", "--compile")
    model.train()
    model.set_input(brightened_batch())
    model.optimize_parameters()
    for height, width in ((32, 48), (40, 40)):  # validation images of two sizes, as train.py validates
        image = torch.rand(1, 3, height, width)
        model.eval()
        model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=bool)})
        model.test(scored_only=True)
    model.train()
    model.set_input(brightened_batch())
    model.optimize_parameters()  # back to training: its variants are still cached
    # G_T and G_R share one code object; its variants exceed dynamo's default limit of 8, which would have
    # raised here (fail_on_recompile_limit_hit) instead of silently running the rest uncompiled.
    variants = len(_debug_get_cache_entry_list(ConvLSTMGenerator.forward.__code__))
    assert 8 < variants <= RECOMPILE_LIMIT


def test_cudnn_benchmark_is_for_fixed_sizes_only(make_options, tmp_path, kernel_flags, monkeypatch):
    chosen = []
    monkeypatch.setattr(base_options, "select_kernels", lambda *args: chosen.append(args))
    for phase, flags in (("train", ()), ("test", ()), ("test", ("--tile", "512")), ("train", ("--deterministic",))):
        make_options(phase, "--dataroot", str(tmp_path), "--name", "k", *flags)
    # (deterministic, cuda, fixed sizes, tf32): training crops and test tiles have fixed sizes, test images do not.
    assert chosen == [(False, False, True, "auto"), (False, False, False, "auto"), (False, False, True, "auto"),
                      (True, False, True, "auto")]
    monkeypatch.undo()
    for values, expected in (({}, True), ({"fixed_sizes": False}, False), ({"cuda": False}, False),
                             ({"deterministic": True}, False)):
        torch.backends.cudnn.benchmark = not expected
        select_kernels(**{"deterministic": False, "cuda": True, "fixed_sizes": True, **values})
        assert torch.backends.cudnn.benchmark is expected, values


@pytest.mark.parametrize(("flags", "tf32"), [((), True), (("--tf32", "off"), False), (("--deterministic",), False),
                                           (("--deterministic", "--tf32", "on"), True)])
def test_tf32_is_an_explicit_choice_on_by_default_and_off_with_deterministic(make_options, tmp_path, kernel_flags,
                                                                            flags, tf32):
    # Set for convolutions and matrix products alike (torch's own defaults differ: on and off).
    for phase in ("train", "test"):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not tf32
        make_options(phase, "--dataroot", str(tmp_path), *flags)  # parsing sets the run's kernel flags
        assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32, phase


def test_deterministic_option_switches_torch_to_deterministic_algorithms(make_options, tmp_path, kernel_flags,
                                                                           monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    _model(make_options, tmp_path, "train")
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    model = _model(make_options, tmp_path, "train", "--deterministic")
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what cuBLAS needs to be deterministic
    # A training step runs in this mode (on the CPU every op it uses has a deterministic kernel).
    model.set_input(brightened_batch())
    model.optimize_parameters()
    assert all(torch.isfinite(torch.tensor(list(model.get_current_losses().values()))))
