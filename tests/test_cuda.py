"""The CUDA paths against the CPU and the golden arrays: fp32, TF32, --amp, training steps, the fast options,
--compile, tiling, DataParallel, torchrun, exact resumes (fp32 and fp16 with its loss scaler), validation,
checkpoints, the Python API and remove_reflection.py, and the default path (benchmark mode and TF32).

Every test here is marked `cuda` (pyproject.toml) and skipped, with the reason, where torch sees no GPU (the
two-GPU ones also where it sees only one); tools/gpu_check.sh runs them on a GPU machine (`pytest -m cuda`).
The strict fp32 comparisons run with TF32 off (--tf32 off; the default, auto, uses TF32 on Ampere and later, a
10-bit mantissa) and without cuDNN's benchmark mode (which may pick other algorithms per size): then the CPU's
tolerance holds. The default path (TF32 on, benchmark mode for fixed sizes) has the bf16 tolerance of
tests/helpers.py (BF16_TEST_MAX, BF16_TEST_MEAN), 0.06 max and 0.006 mean on [0, 1] outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    BF16_GRAD_COSINE,
    BF16_LOSS_REL,
    BF16_TEST_MAX,
    BF16_TEST_MEAN,
    FAST,
    FIXTURES,
    FP16_TEST_MAX,
    FP16_TEST_MEAN,
    REPO_ROOT,
    assert_near,
    build_tiny_dataset,
    mixture_batch,
)

from data.image_folder import load_rgb
from models import checkpoint, load_ibcln
from models.ibcln_model import run_cascade
from models.networks import ConvLSTMGenerator
from options.model_config import create_model
from util.distributed import weight_difference_in
from util.images import to_tensor
from util.machine import cuda_has_native_bf16

REFERENCE_INPUT = FIXTURES / "reference_data" / "testB" / "a.png"
CPU_TOLERANCE = 1e-4  # tests/models/test_conformance.py's, max |ours - golden| over each clamped step
LOSS_REL_FP32 = 1e-3  # a training step's loss terms, CUDA fp32 (TF32 off) against the CPU
# Gradients, CUDA fp32 against the CPU, per tensor relative to its largest entry: other kernels move
# pre-activations by ~1e-7, which flips a few ReLUs sitting at 0 (as channels_last does;
# tests/models/test_speed_options.py).
GRAD_REL_FP32 = 5e-3
AMP_TOLERANCES = {"bf16": (BF16_TEST_MAX, BF16_TEST_MEAN), "fp16": (FP16_TEST_MAX, FP16_TEST_MEAN)}

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")


@pytest.fixture(autouse=True)
def _restore_kernel_flags(kernel_flags) -> None:
    """Models set cuDNN benchmark and deterministic mode globally: each test starts from, and leaves, the same."""
    torch.backends.cudnn.benchmark = False


def assert_tf32_off() -> None:
    """Assert that neither cuDNN convolutions nor matmuls may use TF32 (read back, not assumed)."""
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """Turn TF32 off in cuDNN and matmuls and cuDNN's benchmark mode off for the test (restored after it)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    assert_tf32_off()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def states(golden_states) -> tuple[dict, dict]:
    """Return the golden arrays' (G_T, G_R) weights (tests/conftest.py)."""
    return golden_states


def _cuda_cascade(states: tuple[dict, dict], image: torch.Tensor, dtype: torch.dtype | None = None,
                  fast: bool = False) -> tuple[list, torch.dtype]:
    """Return (the clamped [T_0..T_3] + [R_0..R_3] on the CPU, the dtype T_1 was computed in) of the golden weights
    on CUDA, under autocast to dtype when given; fast: the shortcuts, fused gates and channels_last."""
    nets = []
    for state in states:
        net = ConvLSTMGenerator()
        net.load_state_dict(state)
        net = net.eval().cuda()
        if fast:
            net = net.configure(**FAST).to(memory_format=torch.channels_last)
        nets.append(net)
    image = image.cuda()
    if fast:
        image = image.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)
    with torch.inference_mode(), autocast:
        fake_Ts, fake_Rs, _, _ = run_cascade(nets[0], nets[1], image)
    return [t.float().clamp(0, 1).cpu() for t in fake_Ts + fake_Rs], fake_Ts[1].dtype


def _golden_errors(outputs: list) -> dict[str, torch.Tensor]:
    """Return step name -> |output - golden| for T1..T3, R1..R3."""
    golden = np.load(FIXTURES / "golden_a_seed1.npz")
    index = {f"T{k}": k for k in (1, 2, 3)} | {f"R{k}": 4 + k for k in (1, 2, 3)}
    return {name: (outputs[index[name]][0] - torch.from_numpy(golden[name])).abs() for name in golden.files}


@pytest.fixture(scope="module")
def reference_image() -> torch.Tensor:
    return to_tensor(load_rgb(str(REFERENCE_INPUT)))[None]


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "channels_last_fused_gates"])
def test_cascade_on_cuda_matches_golden_arrays(states, reference_image, strict_fp32, fast):
    outputs, dtype = _cuda_cascade(states, reference_image, fast=fast)
    errors = _golden_errors(outputs)
    assert dtype == torch.float32 and len(errors) == 6
    for name, err in errors.items():
        assert float(err.max()) <= CPU_TOLERANCE, f"{name}: max abs error {float(err.max())}"


def test_tf32_is_off_when_asked_and_stays_within_the_bf16_tolerance_when_on(states, reference_image, strict_fp32):
    strict = max(float(e.max()) for e in _golden_errors(_cuda_cascade(states, reference_image)[0]).values())
    torch.backends.cudnn.allow_tf32 = True  # torch's default (restored by strict_fp32)
    errors = _golden_errors(_cuda_cascade(states, reference_image)[0])
    for name, err in errors.items():
        assert float(err.max()) <= BF16_TEST_MAX and float(err.mean()) <= BF16_TEST_MEAN, name
    if torch.cuda.get_device_capability(0) >= (8, 0):  # TF32 exists from Ampere on: it must change the results
        assert max(float(e.max()) for e in errors.values()) > strict


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_cascade_on_cuda_is_within_the_documented_tolerance(states, reference_image, amp):
    if amp == "bf16" and not cuda_has_native_bf16():
        pytest.skip("this GPU has no native bfloat16")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    outputs, computed_in = _cuda_cascade(states, reference_image, dtype)
    assert computed_in == dtype  # the reduced precision did run (an fp32 error would not show this)
    max_tol, mean_tol = AMP_TOLERANCES[amp]
    for name, err in _golden_errors(outputs).items():
        assert float(err.max()) <= max_tol and float(err.mean()) <= mean_tol, f"{name} ({amp})"


def _train_model(make_options, tmp_path: Path, gpu: str, *flags: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        opt = make_options("train", "--dataroot", str(tmp_path), "--name", "cuda", "--gpu_ids", gpu, "--no_dropout",
                           *flags)
        torch.manual_seed(0)
        return create_model(opt)


def _load(model, weights: dict[str, dict]) -> None:
    for name in ("G_T", "G_R", "D"):
        model.nets()[name].load_state_dict(weights[name])
    model.vgg.load_state_dict(weights["vgg"])
    model.train()


def _losses_and_gradients(model, weights: dict[str, dict]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Return the loss terms and the unscaled gradients of G_T, G_R (from L_G) and D (from L_D) on mixture_batch()."""
    _load(model, weights)
    model.set_input(mixture_batch())
    model.forward()
    model.set_requires_grad(model.netD, True)
    model.compute_loss_D()
    model.set_requires_grad(model.netD, False)
    model.backward_G()
    model.set_requires_grad(model.netD, True)
    model._scaled(model.loss_D).backward()
    scale = model.scaler.get_scale() if model.scaler is not None else 1.0
    grads = {f"{n}.{k}": p.grad.detach().float().cpu() / scale for n in ("G_T", "G_R", "D")
             for k, p in model.nets()[n].named_parameters() if p.grad is not None}
    return model.get_current_losses(), grads


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_step_on_cuda_matches_the_cpu_step(make_options, tmp_path, states, strict_fp32, amp):
    if amp == "bf16" and not cuda_has_native_bf16():
        pytest.skip("this GPU has no native bfloat16")
    cpu = _train_model(make_options, tmp_path, "-1")
    weights = {"G_T": states[0], "G_R": states[1], "D": cpu.nets()["D"].state_dict(), "vgg": cpu.vgg.state_dict()}
    weights = {k: {n: t.clone() for n, t in v.items()} for k, v in weights.items()}
    ref_losses, ref_grads = _losses_and_gradients(cpu, weights)
    # fp32 runs --deterministic: no benchmark mode, deterministic kernels (the reflection pad's own backward).
    flags = ["--deterministic"] if amp == "none" else ["--amp", amp]
    gpu = _train_model(make_options, tmp_path, "0", *flags)
    assert gpu.device.type == "cuda" and next(gpu.nets()["G_T"].parameters()).is_cuda
    assert (gpu.scaler is not None) == (amp == "fp16")  # fp16 trains with loss scaling
    if amp == "none":
        assert_tf32_off()
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    losses, grads = _losses_and_gradients(gpu, weights)
    assert list(losses) == list(ref_losses) and grads.keys() == ref_grads.keys()
    for name, value in ref_losses.items():
        assert losses[name] == pytest.approx(value, rel=LOSS_REL_FP32 if amp == "none" else BF16_LOSS_REL), name
    for key, ref in ref_grads.items():
        if amp == "none":
            assert_near(grads[key], ref, rel=GRAD_REL_FP32, what=key)
        else:
            cosine = torch.nn.functional.cosine_similarity(grads[key].flatten(), ref.flatten(), dim=0)
            assert float(cosine) >= BF16_GRAD_COSINE, f"{key} ({amp}): cosine {float(cosine):.4f}"
    # A whole step (optimisers, and the loss scaler for fp16) moves every network and keeps it finite.
    _load(gpu, weights)
    gpu.set_input(mixture_batch())
    gpu.optimize_parameters()
    for name in ("G_T", "G_R", "D"):
        after = gpu.nets()[name].state_dict()
        assert all(bool(torch.isfinite(v).all()) for v in after.values()), name
        assert any(not torch.equal(after[k].cpu(), weights[name][k]) for k in weights[name]), name
    if amp == "fp16":
        assert gpu.scaler.get_scale() > 0


def _cpu_test_model(make_options, checkpoints: Path, name: str, *flags: str):
    opt = make_options("test", "--dataroot", str(checkpoints), "--name", name, "--epoch", "ck",
                       "--checkpoints_dir", str(checkpoints), *flags)
    model = create_model(opt)
    checkpoint.load_for_run(model, opt)
    model.setup(opt.verbose)
    model.eval()
    return model


def _test_outputs(model, image: torch.Tensor) -> list[torch.Tensor]:
    model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=torch.bool)})
    model.test()
    return [t.float().cpu() for t in model.fake_Ts[1:] + model.fake_Rs[1:]]


def _save_generators(folder: Path, states: tuple[dict, dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in zip(("G_T", "G_R"), states):
        torch.save(state, folder / f"ck_net_{name}.pth")


def test_cuda_checkpoints_load_on_the_cpu(make_options, tmp_path, states, reference_image, strict_fp32):
    image = reference_image[..., :96, :128].contiguous()
    # A model trained on one GPU saves its networks through save_networks (plain state_dicts on the CPU).
    gpu = _train_model(make_options, tmp_path, "0", "--checkpoints_dir", str(tmp_path / "ck"), "--tf32", "off")
    gpu.nets()["G_T"].load_state_dict(states[0])
    gpu.nets()["G_R"].load_state_dict(states[1])
    checkpoint.save_networks(gpu, "ck")
    gpu.eval()
    torch.backends.cudnn.benchmark = False  # the training model turned it on
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


@pytest.mark.parametrize("flags", [("--tile", "32", "--tile_overlap", "8"), ("--compile",)], ids=["tile", "compile"])
def test_test_model_options_on_cuda_match_the_cpu(make_options, tmp_path, states, strict_fp32, flags):
    import torch._dynamo
    import torch._inductor.config as inductor_config

    _save_generators(tmp_path / "ck" / "opts", states)
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    expected = _test_outputs(_cpu_test_model(make_options, tmp_path / "ck", "opts",
                                             *[f for f in flags if f != "--compile"]), image)
    torch._dynamo.reset()
    # --compile sets inductor's freezing for the process: config.patch restores it.
    with inductor_config.patch(freezing=inductor_config.freezing):
        try:
            got = _test_outputs(_cpu_test_model(make_options, tmp_path / "ck", "opts", "--gpu_ids", "0", "--tf32",
                                                "off", *flags), image)
        finally:
            torch._dynamo.reset()
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= CPU_TOLERANCE


def _record_autocast_dtype(module: torch.nn.Module, seen: list) -> None:
    module.register_forward_pre_hook(lambda mod, args: seen.append(
        (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"), args[0].shape[0])))


@two_gpus
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_data_parallel_trains_batches_smaller_than_the_gpus_in_the_asked_dtype(make_options, tmp_path, amp):
    if amp == "bf16" and not cuda_has_native_bf16():
        pytest.skip("this GPU has no native bfloat16")
    model = _train_model(make_options, tmp_path, "0,1", *([] if amp == "none" else ["--amp", amp]))
    assert isinstance(model.netG_T, torch.nn.DataParallel)
    seen: list = []
    _record_autocast_dtype(model.nets()["G_T"], seen)  # replicas copy the hooks of the module they replicate
    for size in (1, 2):  # a batch of one reaches one replica only; one of two, each GPU one sample
        batch = {k: v[:size] if isinstance(v, torch.Tensor) else v for k, v in mixture_batch().items()}
        model.set_input(batch)
        model.optimize_parameters()
        assert all(np.isfinite(list(model.get_current_losses().values())))
    assert seen and all(n == 1 for _, _, n in seen)  # every replica call got one sample
    if amp == "bf16":
        assert all(enabled and dtype == torch.bfloat16 for enabled, dtype, _ in seen)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # The repository first, then what PYTHONPATH held: the GPU check puts the packages its bundle added there.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    return ["train.py", "--dataroot", str(root), "--name", name, "--model", "IBCLN", "--checkpoints_dir", str(ckpt),
            "--gpu_ids", "0", "--display_id", "-1", "--no_html", "--vgg_weights", "random", "--dataset_size", "4",
            "--batch_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0", "--seed", "7",
            "--print_freq", "2", *extra]


@two_gpus
@pytest.mark.slow
def test_torchrun_trains_on_two_gpus_with_nccl(tmp_path):
    root = build_tiny_dataset(tmp_path / "data")
    proc = _run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                *_train_args(root, tmp_path / "ck", "ddp", "--niter", "1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DDP: 2 processes" in proc.stdout and (tmp_path / "ck" / "ddp" / "final_net_G_T.pth").is_file()
    assert weight_difference_in(proc.stdout) == 0  # every rank ends with rank 0's weights
    firsts = {line.split(" (")[0] for line in proc.stdout.splitlines() if line.startswith("rank ")}
    assert firsts == {"rank 0 of 2", "rank 1 of 2"}
    assert "(local rank 1): cuda:1 " in proc.stdout  # --gpu_ids 0 names fewer GPUs than processes: one each


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["none", "fp16"])
def test_deterministic_resume_on_cuda_gives_identical_weights(tmp_path, amp):
    # fp16 resumes its loss scale too: the scale decides which steps are skipped and how gradients round.
    root = build_tiny_dataset(tmp_path / "data")
    ckpt = tmp_path / "ck"
    flags = ("--deterministic", "--niter", "2", "--save_epoch_freq", "1", *(["--amp", "fp16"] if amp == "fp16" else []))
    straight = _run(*_train_args(root, ckpt, "straight", *flags))
    assert straight.returncode == 0, straight.stderr[-3000:]
    (ckpt / "resumed").mkdir()  # the straight run's epoch-1 checkpoint, resumed in a new process
    for path in (ckpt / "straight").glob("1_*.pth"):
        shutil.copy(path, ckpt / "resumed" / path.name)
    second = _run(*_train_args(root, ckpt, "resumed", "--continue_train", "--epoch", "1", *flags))
    assert second.returncode == 0 and "resuming after epoch 1" in second.stdout, second.stderr[-3000:]
    assert "holds no fp16 loss scale" not in second.stdout
    for net in ("G_T", "G_R", "D"):
        a = torch.load(ckpt / "straight" / f"final_net_{net}.pth", weights_only=True)
        b = torch.load(ckpt / "resumed" / f"final_net_{net}.pth", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{net} differs after a resume on CUDA"
    states = [torch.load(ckpt / name / "final_train_state.pth", weights_only=False) for name in ("straight", "resumed")]
    if amp == "fp16":
        assert states[0]["scaler"] is not None and states[0]["scaler"] == states[1]["scaler"]
    else:
        assert states[0]["scaler"] is None


@two_gpus
def test_data_parallel_gives_the_single_gpu_losses_and_gradients(make_options, tmp_path, states, strict_fp32):
    # A batch of 2 split over 2 GPUs: the same losses and gradients as on one GPU, within the fp32 tolerances.
    one = _train_model(make_options, tmp_path, "0", "--tf32", "off")
    weights = {"G_T": states[0], "G_R": states[1], "D": one.nets()["D"].state_dict(), "vgg": one.vgg.state_dict()}
    weights = {k: {n: t.detach().cpu().clone() for n, t in v.items()} for k, v in weights.items()}
    ref_losses, ref_grads = _losses_and_gradients(one, weights)
    two = _train_model(make_options, tmp_path, "0,1", "--tf32", "off")
    assert isinstance(two.netG_T, torch.nn.DataParallel)
    losses, grads = _losses_and_gradients(two, weights)
    for name, value in ref_losses.items():
        assert losses[name] == pytest.approx(value, rel=LOSS_REL_FP32), name
    for key, ref in ref_grads.items():
        assert_near(grads[key], ref, rel=GRAD_REL_FP32, what=key)


def test_validation_on_cuda_scores_as_on_the_cpu(make_options, tmp_path, states, strict_fp32):
    from evaluation.validation import open_validation_set, validate

    root = build_tiny_dataset(tmp_path / "data")
    results = []
    for gpu in ("-1", "0"):
        opt = make_options("train", "--dataroot", str(root), "--name", f"val{gpu}", "--gpu_ids", gpu, "--tf32", "off",
                           "--val_dataroot", str(root))
        torch.manual_seed(0)
        model = create_model(opt)
        model.nets()["G_T"].load_state_dict(states[0])
        model.nets()["G_R"].load_state_dict(states[1])
        results.append(validate(model, open_validation_set(opt), opt))
    cpu, gpu = results
    assert gpu.images == cpu.images == 2 and gpu.scores.keys() == cpu.scores.keys()
    for label, (psnr, ssim) in cpu.scores.items():
        assert gpu.scores[label][0] == pytest.approx(psnr, abs=0.01), label  # dB
        assert gpu.scores[label][1] == pytest.approx(ssim, abs=1e-4), label


# The default GPU path (--tf32 auto: on; benchmark mode for fixed sizes) against the CPU, in grey levels of
# [0, 255] images: the bf16 tolerance of tests/models/test_speed_options.py (TF32 keeps 10 bits of mantissa, bf16 7).
DEFAULT_PATH_MAX, DEFAULT_PATH_MEAN = 255 * BF16_TEST_MAX, 255 * BF16_TEST_MEAN


def _grey_levels(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(diff.max()), float(diff.mean())


@pytest.mark.slow
def test_load_ibcln_and_remove_reflection_on_cuda_match_the_cpu(tmp_path, states, reference_image):
    from PIL import Image

    folder = tmp_path / "ck" / "api"
    _save_generators(folder, states)
    image = (reference_image[0, :, :96, :128].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cpu = load_ibcln(str(folder), device="cpu", epoch="ck").remove_reflection(image, tile=0)
    model = load_ibcln(str(folder), device="cuda", epoch="ck")
    assert model.device.type == "cuda" and next(model.model.nets()["G_T"].parameters()).is_cuda
    gpu = model.remove_reflection(image, tile=0)
    for a, b in zip(gpu, cpu):
        worst, mean = _grey_levels(a, b)
        assert worst <= DEFAULT_PATH_MAX and mean <= DEFAULT_PATH_MEAN
    Image.fromarray(image).save(tmp_path / "photo.png")
    outputs = []
    for device in ("cpu", "cuda"):
        proc = _run("remove_reflection.py", str(tmp_path / "photo.png"), "--weights", str(folder), "--epoch", "ck",
                    "--device", device, "--out", str(tmp_path / device), "--tile", "0")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"on {'cuda:0' if device == 'cuda' else 'cpu'}," in proc.stdout
        outputs.append(np.asarray(Image.open(tmp_path / device / "photo_T.png")))
    worst, mean = _grey_levels(*outputs)
    assert worst <= DEFAULT_PATH_MAX and mean <= DEFAULT_PATH_MEAN


def test_the_default_path_with_benchmark_mode_and_tf32_stays_within_the_stated_tolerance(make_options, tmp_path,
                                                                                          states, reference_image):
    _save_generators(tmp_path / "ck" / "default", states)
    image = reference_image[..., :128, :192].contiguous()
    tiles = ("--tile", "64", "--tile_overlap", "16")  # equal tiles: benchmark mode on
    expected = _test_outputs(_cpu_test_model(make_options, tmp_path / "ck", "default", *tiles), image)
    model = _cpu_test_model(make_options, tmp_path / "ck", "default", "--gpu_ids", "0", *tiles)
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32
    got = _test_outputs(model, image)
    for a, b in zip(got, expected):
        diff = (a - b).abs()
        assert float(diff.max()) <= BF16_TEST_MAX and float(diff.mean()) <= BF16_TEST_MEAN
    # A training step on the default path (benchmark mode, TF32) against the CPU's loss terms.
    cpu = _train_model(make_options, tmp_path, "-1")
    weights = {"G_T": states[0], "G_R": states[1], "D": cpu.nets()["D"].state_dict(), "vgg": cpu.vgg.state_dict()}
    weights = {k: {n: t.clone() for n, t in v.items()} for k, v in weights.items()}
    ref_losses, _ = _losses_and_gradients(cpu, weights)
    gpu = _train_model(make_options, tmp_path, "0")
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
    losses, _ = _losses_and_gradients(gpu, weights)
    for name, value in ref_losses.items():
        assert losses[name] == pytest.approx(value, rel=BF16_LOSS_REL), name
