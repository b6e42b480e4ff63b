"""scripts/gpu_check.sh: its CPU dry run passes every step, a failing step fails the run; one loss read per step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_tiny_dataset

from models import create_model
from models.base_model import NonFiniteLossError


def _gpu_check(out: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_cpu_dry_run_passes_every_step(tmp_path):
    benchmarks = tmp_path / "benchmarks"
    build_tiny_dataset(benchmarks / "ceilnet_synthetic100", n_train=0, n_reflection=0, n_test=2)
    build_tiny_dataset(benchmarks / "real_pairs5", n_train=0, n_reflection=0, n_test=2)
    out = tmp_path / "out"
    proc = _gpu_check(out, "--cpu-dry-run", "--benchmarks", str(benchmarks), "--minutes", "0.25")
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert proc.returncode == 0, json.dumps(summary, indent=1)[-4000:] + proc.stdout[-3000:]
    assert summary["mode"] == "cpu-dry-run" and summary["passed"] is True
    assert sorted(steps) == [1, 2, 3, 4, 5, 6, 7]
    assert all(s["status"] == "passed" and s["seconds"] >= 0 for s in steps.values())
    assert steps[1]["details"]["cuda_available"] is False
    assert "skipped" in steps[2]["details"]["pytest"]  # the CUDA tests, with their reason
    runs = steps[3]["details"]["runs"]
    assert runs["fp32"] == runs["continue_train"] == "passed"
    assert set(steps[3]["details"]["left_out"]) >= {"amp_fp16", "compile"}  # CUDA-only, and said so
    assert steps[4]["details"]["backend"].startswith("gloo")
    assert steps[5]["details"]["whole"]["peak_mib"] > 0 and steps[5]["details"]["tiled"]["peak_mib"] > 0
    plain = steps[6]["details"]["variants"]["plain"]
    assert plain["host_reads_per_step"] == 2  # the finiteness check and the printed losses
    quality = steps[7]["details"]
    assert quality["photos"].endswith("trainA1")  # no --photos: the demo data's photos
    assert quality["validation"] and "PSNR_T_3" in quality["validation"][-1]  # validated on the held-out split
    assert set(quality["scores"]) == {"ceilnet100", "real5"}
    for scores in quality["scores"].values():
        assert scores["images"] == 2
        assert scores["T_3_minus_I_PSNR"] == pytest.approx(scores["PSNR_T_3"] - scores["PSNR_I"], abs=1e-3)
    log = (out / "gpu_check.log").read_text()
    assert "step 7" in log and "make_synthetic_set.py" in log and "train.py" in log and "evaluate.py" in log


def test_a_failing_step_fails_the_run(tmp_path):
    # Step 5 alone has no checkpoint of step 3 to test: it fails, the summary says so, the exit status is 1.
    out = tmp_path / "out"
    proc = _gpu_check(out, "--cpu-dry-run", "--steps", "5", timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 1
    assert summary["passed"] is False
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(5, "failed")]
    assert "checkpoint" in summary["steps"][0]["details"]["error"]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark", REPO_ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def model(make_options, tmp_path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        torch.manual_seed(0)
        model = create_model(make_options("train", "--dataroot", str(tmp_path), "--name", "reads"))
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(2, 3, 32, 32, generator=gen)
    resize = torch.nn.functional.interpolate
    model.set_input({"I": (0.7 * t + 0.2).clamp(0, 1), "T": t, "T2": resize(t, scale_factor=0.5),
                     "T4": resize(t, scale_factor=0.25), "alpha": torch.tensor([0.7, 0.9]),
                     "isNatural": torch.tensor([False, True])})
    model.train()
    return model


def test_a_training_step_reads_the_device_once_and_the_losses_once_more(model):
    count = _benchmark_module().count_host_reads
    assert count(model.optimize_parameters) == 1  # the finiteness check of every loss at once
    losses = {}
    assert count(lambda: losses.update(model.get_current_losses())) == 1
    assert list(losses) == model.loss_names and all(isinstance(v, float) for v in losses.values())
    assert losses["res"] > 0 and losses["T"] == pytest.approx(
        losses["idt_T"] + losses["res"] + losses["MP"] + losses["G"], rel=1e-5)


def test_the_finiteness_check_still_names_the_first_bad_loss(model):
    model.optimize_parameters()
    model.loss_MP = torch.tensor(float("inf"))
    model.loss_D = torch.tensor(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss MP is inf") as err:
        model.check_finite(("idt_T", "res", "MP", "G", "idt_R", "D"))
    assert err.value.loss_name == "MP"
    model.check_finite(("idt_T", "res", "G"))  # finite ones pass
