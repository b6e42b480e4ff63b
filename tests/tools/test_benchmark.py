"""tools/benchmark.py: its variants per device, the matmul peak at the convolutions' precision, a CPU smoke run."""

from __future__ import annotations

import importlib
import json
import re

import pytest
import torch
from helpers import BF16_LOSS_REL, BF16_TEST_MAX


def _benchmark_module():
    return importlib.import_module("tools.benchmark")


def test_benchmark_offers_amp_variants_only_where_the_device_has_amp(monkeypatch):
    bench = _benchmark_module()
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(SystemExit, match="need AMP.*bfloat16"):
        bench.select_variants("plain,amp", "cpu")
    assert bench.select_variants("fast,plain", "cpu") == ["plain", "fast"]
    assert "amp" not in bench.select_variants("all", "cpu") and "amp" in bench.select_variants("all", "cuda")
    assert bench.variant_flags("fast", "cpu") == ["--channels_last"]
    assert bench.variant_flags("fast", "cuda") == ["--channels_last", "--amp", "--fused_gates", "--compile"]
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: True)
    assert "amp" in bench.select_variants("all", "cpu") and "compile" not in bench.select_variants("all", "cpu")
    assert bench.variant_flags("fast", "cpu") == ["--channels_last", "--amp"]


@pytest.mark.parametrize("conv_tf32", [True, False])
def test_benchmark_measures_the_fp32_matmul_peak_at_the_convolutions_precision(monkeypatch, conv_tf32):
    bench = _benchmark_module()
    seen = []
    monkeypatch.setattr(torch.Tensor, "__matmul__",
                        lambda a, b: seen.append(torch.backends.cuda.matmul.allow_tf32) or torch.mm(a, b))
    # torch's backend flags are properties that monkeypatch cannot delete again: saved and restored by hand.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv_tf32, not conv_tf32
    try:
        assert bench.matmul_tflops(torch.device("cpu"), torch.float32, 8, repeats=2) > 0
        assert torch.backends.cuda.matmul.allow_tf32 is (not conv_tf32)  # the setting is restored after
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert seen == [conv_tf32] * 3  # every timed product ran at the convolutions' TF32 setting


@pytest.mark.slow
def test_benchmark_smoke_run_writes_the_report(tmp_path, script_runner):
    out = tmp_path / "bench.json"
    proc = script_runner("tools/benchmark.py", "--device", "cpu", "--sizes", "tiny", "--repeats", "1", "--warmup",
                         "0", "--variants", "plain,fast_fp32,fast", "--json", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.get_num_threads() = 2" in proc.stdout and re.search(r"\| +variant +\|", proc.stdout)
    report = json.loads(out.read_text())
    assert report["device"]["type"] == "cpu" and report["device"]["torch_threads"] == 2
    assert report["settings"]["test_sizes"] == [32, 64] and report["matmul_tflops"]["fp32"] > 0
    assert set(report["variants"]) == {"plain", "fast_fp32", "fast"}
    for entry in report["variants"].values():
        for key in ("train_iter", "test_32", "test_64"):
            assert entry[f"{key}_s"] > 0 and len(entry[f"{key}_times_s"]) == 1
            assert entry[f"{key}_peak_mb"] > 0 and entry[f"{key}_gflop"] > 0 and entry[f"{key}_tflops"] > 0
    exact, fast, plain = (report["variants"][v] for v in ("fast_fp32", "fast", "plain"))
    assert exact["test_32_max_abs_diff_vs_plain"] < 1e-5 and exact["train_iter_loss_max_rel_diff_vs_plain"] < 1e-4
    assert exact["test_64_gflop"] < plain["test_64_gflop"]  # the zero-state skip does less work
    # On this CPU "fast" adds bf16 autocast exactly when the CPU has bf16 instructions, with bf16's tolerances.
    amp = report["device"]["amp_dtype"] == "bfloat16"
    assert fast["flags"] == ["--channels_last"] + (["--amp"] if amp else [])
    assert (report["matmul_tflops"]["amp"] is not None) == amp
    assert fast["test_32_max_abs_diff_vs_plain"] <= (BF16_TEST_MAX if amp else 1e-5)
    assert fast["train_iter_loss_max_rel_diff_vs_plain"] <= (BF16_LOSS_REL if amp else 1e-4)
    assert set(report["speedup_vs_plain"]["fast"]) == {"train_iter", "test_32", "test_64"}
    assert plain["train_iter_cudnn_benchmark"] is False and plain["test_32_cudnn_benchmark"] is False  # CPU
    assert report["data_samples_per_s"] > 0
