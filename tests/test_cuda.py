"""The CUDA paths against the CPU: conformance on the GPU, --amp within its tolerance, a training step, checkpoints.

Every test here is marked `cuda` (pyproject.toml) and skipped, with the reason, where torch sees no GPU;
scripts/gpu_check.sh runs them on a GPU machine (`pytest -m cuda`). The fp32 comparisons run with TF32 off
(cuDNN uses TF32 for fp32 convolutions by default on Ampere and later, a 10-bit mantissa): then the CPU's
tolerance holds. With TF32 on, the outputs stay within the bf16 tolerance of tests/test_speed_options.py.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_speed_options import BF16_LOSS_REL, BF16_TEST_MAX, BF16_TEST_MEAN, _batch

from data.base_dataset import to_tensor
from data.image_folder import load_rgb
from models import checkpoint, create_model
from models.ibcln_model import run_cascade
from models.networks import ConvLSTMGenerator

DATA = Path(__file__).parent / "data"
REFERENCE_INPUT = DATA / "reference_data" / "testB" / "a.png"
CPU_TOLERANCE = 1e-4  # tests/test_conformance.py's, max |ours - golden| over each clamped step
LOSS_REL_FP32 = 1e-3  # a training step's loss terms, CUDA fp32 (TF32 off) against the CPU

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")]


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """Turn TF32 off in cuDNN and matmuls for the test (restored after it)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def states(make_weights) -> tuple[dict, dict]:
    keys = json.loads((DATA / "generator_keys.json").read_text())
    return make_weights.make_state_dict(keys, 1), make_weights.make_state_dict(keys, 2)


def _cuda_cascade(states: tuple[dict, dict], image: torch.Tensor, dtype: torch.dtype | None = None) -> list:
    """Return the clamped [T_0..T_3] + [R_0..R_3] of the golden weights on CUDA (under autocast to dtype) on the CPU."""
    nets = []
    for state in states:
        net = ConvLSTMGenerator()
        net.load_state_dict(state)
        nets.append(net.eval().cuda())
    autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)
    with torch.inference_mode(), autocast:
        fake_Ts, fake_Rs, _, _ = run_cascade(nets[0], nets[1], image.cuda())
    return [t.float().clamp(0, 1).cpu() for t in fake_Ts + fake_Rs]


def _golden_errors(outputs: list) -> dict[str, torch.Tensor]:
    """Return step name -> |output - golden| for T1..T3, R1..R3."""
    golden = np.load(DATA / "golden_a_seed1.npz")
    index = {f"T{k}": k for k in (1, 2, 3)} | {f"R{k}": 4 + k for k in (1, 2, 3)}
    return {name: (outputs[index[name]][0] - torch.from_numpy(golden[name])).abs() for name in golden.files}


@pytest.fixture(scope="module")
def reference_image() -> torch.Tensor:
    return to_tensor(load_rgb(str(REFERENCE_INPUT)))[None]


def test_cascade_on_cuda_matches_golden_arrays(states, reference_image, strict_fp32):
    errors = _golden_errors(_cuda_cascade(states, reference_image))
    assert len(errors) == 6
    for name, err in errors.items():
        assert float(err.max()) <= CPU_TOLERANCE, f"{name}: max abs error {float(err.max())}"


def test_cascade_on_cuda_with_tf32_stays_within_the_bf16_tolerance(states, reference_image, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # torch's default
    for name, err in _golden_errors(_cuda_cascade(states, reference_image)).items():
        assert float(err.max()) <= BF16_TEST_MAX and float(err.mean()) <= BF16_TEST_MEAN, name


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_cascade_on_cuda_is_within_the_documented_tolerance(states, reference_image, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not support bfloat16")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    errors = _golden_errors(_cuda_cascade(states, reference_image, dtype))
    assert any(float(err.max()) > 0 for err in errors.values())  # the reduced precision did run
    for name, err in errors.items():
        assert float(err.max()) <= BF16_TEST_MAX and float(err.mean()) <= BF16_TEST_MEAN, f"{name} ({amp})"


def _train_model(make_options, tmp_path: Path, gpu: str, *flags: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        opt = make_options("train", "--dataroot", str(tmp_path), "--name", "cuda", "--gpu_ids", gpu, "--no_dropout",
                           *flags)
        torch.manual_seed(0)
        return create_model(opt)


def _one_step(model, weights: dict[str, dict]) -> dict[str, float]:
    """Load weights (G_T, G_R, D, vgg), take one training step on _batch(), return its losses."""
    for name in ("G_T", "G_R", "D"):
        model.nets()[name].load_state_dict(weights[name])
    model.vgg.load_state_dict(weights["vgg"])
    model.train()
    model.set_input(_batch())
    model.optimize_parameters()
    return model.get_current_losses()


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_step_on_cuda_matches_the_cpu_step(make_options, tmp_path, states, strict_fp32, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not support bfloat16")
    cpu = _train_model(make_options, tmp_path, "-1")
    weights = {"G_T": states[0], "G_R": states[1], "D": cpu.nets()["D"].state_dict(), "vgg": cpu.vgg.state_dict()}
    weights = {k: {n: t.clone() for n, t in v.items()} for k, v in weights.items()}
    reference = _one_step(cpu, weights)
    gpu = _train_model(make_options, tmp_path, "0", *([] if amp == "none" else ["--amp", amp]))
    assert gpu.device.type == "cuda" and next(gpu.nets()["G_T"].parameters()).is_cuda
    assert (gpu.scaler is not None) == (amp == "fp16")  # fp16 trains with loss scaling
    losses = _one_step(gpu, weights)
    assert list(losses) == list(reference)
    rel = LOSS_REL_FP32 if amp == "none" else BF16_LOSS_REL
    for name, value in reference.items():
        assert losses[name] == pytest.approx(value, rel=rel), f"{name} ({amp})"
    if amp == "fp16":
        assert gpu.scaler.get_scale() > 0


def _cpu_test_model(make_options, checkpoints: Path, name: str):
    opt = make_options("test", "--dataroot", str(checkpoints), "--name", name, "--epoch", "ck",
                       "--checkpoints_dir", str(checkpoints))
    model = create_model(opt)
    model.setup(opt)
    model.eval()
    return model


def _test_outputs(model, image: torch.Tensor) -> list[torch.Tensor]:
    model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=torch.bool)})
    model.test()
    return [t.float().cpu() for t in model.fake_Ts[1:] + model.fake_Rs[1:]]


def test_cuda_checkpoints_load_on_the_cpu(make_options, tmp_path, states, reference_image, strict_fp32):
    image = reference_image[..., :96, :128].contiguous()
    # A model trained on one GPU saves its networks through save_networks (plain state_dicts on the CPU).
    gpu = _train_model(make_options, tmp_path, "0", "--checkpoints_dir", str(tmp_path / "ck"))
    gpu.nets()["G_T"].load_state_dict(states[0])
    gpu.nets()["G_R"].load_state_dict(states[1])
    checkpoint.save_networks(gpu, "ck")
    gpu.eval()
    expected = _test_outputs(gpu, image)
    got = _test_outputs(_cpu_test_model(make_options, tmp_path / "ck", "cuda"), image)
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= CPU_TOLERANCE
    # A DataParallel network's own state_dict holds CUDA tensors under "module.": it loads on the CPU too.
    folder = tmp_path / "ck" / "dp"
    folder.mkdir(parents=True)
    for name, net in gpu.nets().items():
        if name != "D":
            torch.save(torch.nn.DataParallel(net, device_ids=[0]).state_dict(), folder / f"ck_net_{name}.pth")
    assert next(iter(torch.load(folder / "ck_net_G_T.pth", weights_only=True))).startswith("module.")
    got = _test_outputs(_cpu_test_model(make_options, tmp_path / "ck", "dp"), image)
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= CPU_TOLERANCE
