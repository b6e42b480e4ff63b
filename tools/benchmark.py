"""Speed and memory of IBCLN's training step and test cascade, plain fp32 eager against the faster paths.

Usage: python -m tools.benchmark [--device cpu|cuda] [--variants plain,fast | all] [--sizes full|tiny|256,512]
                                 [--repeats 5] [--warmup 1] [--threads 2] [--json PATH]

No training data is needed: the model runs on random tensors (random weights, --vgg_weights random). For each
variant it measures one training iteration (batch 2, --train_size², all losses including VGG and GAN, both
optimiser steps) and one test cascade per size (model.test(): inference mode, clamping), interleaving the
variants (plain, fast, plain, fast, ...) so that a machine shared with other jobs affects them alike, and
reports medians over --repeats runs after --warmup runs. Also reported: peak memory of each run (process RSS
on the CPU, high-water mark reset before the run; torch.cuda.max_memory_allocated on a GPU), FLOPs per run
(torch.utils.flop_counter; convolutions and matrix products) and the achieved FLOP/s as a share of this
device's measured matmul throughput, the largest difference of each variant's outputs from plain's, and
the samples/s of the training data pipeline (tools/benchmark_data.py), and how often one training step
(losses read, as when train.py prints them) reads tensor values back to the host: each such read waits for the
GPU (with CUDA, torch's sync debug mode also counts every synchronizing call). Not a test.

Variants (--variants, comma-separated, or all):
  plain          the released computation: four gate convolutions, full first step, all output heads, ReLU
                 out of place, NCHW, fp32, eager (--no_zero_state_skip and the shortcuts off)
  fused_gates    plain + one convolution for the four ConvLSTM gates (--fused_gates)
  skip_work      plain + no work on the zero LSTM state of step 1, no unused half/quarter heads, in-place
                 ReLU (the default model flags)
  channels_last  plain + NHWC memory format (--channels_last)
  fast_fp32      skip_work + channels_last (the default flags plus --channels_last)
  amp            plain + autocast (--amp: bf16 where supported, else fp16); needs CUDA or a CPU with bfloat16
                 instructions (AVX512-BF16 or AMX)
  compile        plain + torch.compile (--compile; on the CPU minutes of C++ compilation per shape)
  fast           fast_fp32 + --amp where the device has it; on CUDA also --fused_gates and --compile
  fast_nchw      skip_work + --amp: fast without channels_last (what channels_last adds under AMP)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    from models import IBCLNConfig, IBCLNModel
    from models.base_model import BaseModel
    from models.ibcln_model import resolve_amp
    from options.base_options import select_kernels
    from tools.throughput import measure, write_photos  # noqa: TID251 (a shared module of tools/)
    from util.machine import cpu_has_native_bf16, cpu_model, reset_rss_peak, status_mb, trim_heap, usable_cores
except ModuleNotFoundError as err:  # run as a file: the repository root is not on sys.path
    sys.exit(f"error: {err}: run it from the repository root as a module: python -m tools.benchmark")

# name -> (model flags, generator shortcuts on, needs AMP)
# NCHW variants say --channels_last off: test.py's default is auto, which picks a format per machine.
NCHW = ["--channels_last", "off"]
VARIANTS: dict[str, tuple[list[str], bool, bool]] = {
    "plain": (["--no_zero_state_skip", *NCHW], False, False),
    "fused_gates": (["--no_zero_state_skip", "--fused_gates", *NCHW], False, False),
    "skip_work": (NCHW, True, False),
    "channels_last": (["--no_zero_state_skip", "--channels_last"], False, False),
    "fast_fp32": (["--channels_last"], True, False),
    "amp": (["--no_zero_state_skip", "--amp", *NCHW], False, True),
    "compile": (["--no_zero_state_skip", "--compile", *NCHW], False, False),
    "fast": (["--channels_last"], True, False),  # + --amp, and on CUDA --fused_gates --compile (variant_flags)
    "fast_nchw": (["--amp", *NCHW], True, True),
}
SIZE_PRESETS = {"full": (256, [256, 512, 1024]), "tiny": (32, [32, 64])}


def variant_flags(name: str, device: str) -> list[str]:
    """Return the model flags of a variant on this device."""
    flags = list(VARIANTS[name][0])
    if name == "fast":
        flags += ["--amp"] if amp_available(device) else []
        flags += ["--fused_gates", "--compile"] if device == "cuda" else []
    return flags


def amp_available(device: str) -> bool:
    """Return whether --amp runs on this device: CUDA, or a CPU with bfloat16 instructions."""
    return device == "cuda" or cpu_has_native_bf16()


# ----- measurement helpers -------------------------------------------------------------------------------------



class Meter:
    """Times one run and records its peak memory on the device."""

    def __init__(self, device: torch.device):
        self.device = device

    def run(self, fn: Callable[[], Any]) -> tuple[float, float, float]:
        """Return (seconds, peak MiB, peak MiB above the memory in use before the run) of fn()."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device) / 2**20
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            return seconds, peak, peak - before
        trim_heap()
        reset = reset_rss_peak()
        before = status_mb("VmRSS")
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        peak = status_mb("VmHWM") if reset else float("nan")
        return seconds, peak, peak - before


@contextlib.contextmanager
def matmul_precision_of_convolutions() -> Iterator[bool]:
    """Within the block, let fp32 matrix products use TF32 exactly when cuDNN's convolutions may; yield that setting.

    torch's defaults differ (TF32 on for convolutions, off for matmuls): a TF32 convolution measured against
    an IEEE-fp32 matmul peak could show more than 100% of it.
    """
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        yield torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Return the median TFLOP/s of an n x n matrix product on device in dtype (the device's practical peak).

    fp32 products run at the precision the convolutions get (matmul_precision_of_convolutions).
    """
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    times = []
    with matmul_precision_of_convolutions():
        for k in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k:
                times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


# ----- models and inputs ---------------------------------------------------------------------------------------

def build_model(phase: str, flags: list[str], shortcuts: bool, device: str, root: str) -> BaseModel:
    """Return an IBCLN model for phase train/test with the variant's flags, seeded so all variants start equal."""
    # The keywords the variant's flags stand for (every variant names --channels_last, "off" only for NCHW).
    config = IBCLNConfig(is_train=phase == "train", gpu_ids=(0,) if device == "cuda" else (),
                         checkpoints_dir=os.path.join(root, "ck"), name="bench", vgg_weights="random",
                         no_zero_state_skip="--no_zero_state_skip" in flags, fused_gates="--fused_gates" in flags,
                         channels_last="off" if "off" in flags else "on", amp="auto" if "--amp" in flags else "none",
                         compile="--compile" in flags)
    select_kernels(deterministic=False, cuda=device == "cuda", fixed_sizes=phase == "train")  # as train.py, test.py
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        torch.manual_seed(0)
        model = IBCLNModel(config)
    if not shortcuts:  # the released computation, op for op
        for name in ("G_T", "G_R"):
            model.nets()[name].configure(skip_unused_heads=False, inplace_relu=False)
    if phase == "train":
        model.train()
    else:
        model.eval()
    return model


def train_batch(size: int, batch: int, device: torch.device) -> dict:
    """Return a synthetic training batch (the dataset's keys) of `batch` size x size samples."""
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(batch, 3, size, size, generator=gen)
    r = torch.rand(batch, 3, size, size, generator=gen)
    i = (0.8 * t + 0.3 * r).clamp(0, 1)
    resize = torch.nn.functional.interpolate
    return {"I": i, "T": t, "T2": resize(t, scale_factor=0.5, mode="bilinear", antialias=True),
            "T4": resize(t, scale_factor=0.25, mode="bilinear", antialias=True),
            "alpha": torch.full((batch,), 0.8), "isNatural": torch.zeros(batch, dtype=torch.bool)}


def test_batch(size: int) -> dict:
    """Return a synthetic test sample (batch of one) of size x size."""
    gen = torch.Generator().manual_seed(2)
    t = torch.rand(1, 3, size, size, generator=gen)
    return {"I": (0.7 * t + 0.2).clamp(0, 1), "T": t, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=bool)}


READ_METHODS = ("__bool__", "__float__", "__int__", "item", "tolist", "numpy")
SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS) + os.sep


def count_host_reads(fn: Callable[[], Any]) -> int:
    """Return how many tensor values the project's own code read back to the host while fn() ran.

    Counts bool()/float()/int()/.item()/.tolist()/.numpy() called from files of this repository (not torch's
    internals); on a GPU each such read waits for every queued kernel to finish.
    """
    count = 0
    originals = {name: getattr(torch.Tensor, name) for name in READ_METHODS}

    def counting(original: Callable) -> Callable:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            nonlocal count
            caller = sys._getframe(1).f_code.co_filename
            own = caller.startswith(REPO) and not caller.startswith((SCRIPTS, os.path.join(REPO, ".venv")))
            count += own and "site-packages" not in caller
            return original(self, *args, **kwargs)
        return read

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(original))
        fn()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return count


def count_cuda_syncs(fn: Callable[[], Any]) -> int | None:
    """Return how many synchronizing CUDA operations fn() made (torch's sync debug mode); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


def count_flops(fn: Callable[[], Any]) -> float:
    """Return the FLOPs torch's flop counter sees while fn() runs (convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# ----- the benchmark -------------------------------------------------------------------------------------------

def bench_phase(phase: str, size: int, variants: list[str], args: argparse.Namespace, root: str,
                results: dict[str, dict]) -> None:
    """Measure one phase (train, or test at size) for every variant, interleaved, and store into results."""
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    key = "train_iter" if phase == "train" else f"test_{size}"
    built = {v: build_model(phase, variant_flags(v, args.device), VARIANTS[v][1], args.device, root)
              for v in variants}
    data = train_batch(size, args.train_batch, device) if phase == "train" else test_batch(size)
    outputs: dict[str, list[torch.Tensor]] = {}

    def step(name: str) -> Callable[[], None]:
        model = built[name]

        def run() -> None:
            model.set_input(data)
            if phase == "train":
                torch.manual_seed(3)  # the same dropout masks for every variant
                model.optimize_parameters()
            else:
                model.test()

        return run

    meter = Meter(device)
    times: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, list[float]] = {v: [] for v in variants}
    deltas: dict[str, list[float]] = {v: [] for v in variants}
    flops: dict[str, float] = {}
    for v in variants:  # warm-up; the first one also counts the FLOPs (eager variants)
        for k in range(args.warmup):
            if k == 0 and "--compile" not in variant_flags(v, args.device):
                flops[v] = count_flops(step(v))
            else:
                step(v)()
        if phase == "train" and args.warmup:
            outputs[v] = [torch.tensor(list(built[v].get_current_losses().values()))]
    if phase == "train":  # one step whose losses are read, as on a step where train.py prints them
        for v in variants:
            run, model = step(v), built[v]

            def step_and_losses(run: Callable[[], None] = run, model: BaseModel = model) -> None:
                run()
                model.get_current_losses()

            entry = results.setdefault(v, {"flags": variant_flags(v, args.device)})
            entry["train_iter_host_reads"] = count_host_reads(step_and_losses)
            entry["train_iter_cuda_syncs"] = count_cuda_syncs(step_and_losses) if device.type == "cuda" else None
    for _ in range(args.repeats):
        for v in variants:
            seconds, peak, delta = meter.run(step(v))
            times[v].append(seconds)
            peaks[v].append(peak)
            deltas[v].append(delta)
            if phase == "test":
                outputs[v] = [t.detach().float().cpu() for t in (*built[v].fake_Ts[1:], *built[v].fake_Rs[1:])]
            elif v not in outputs:
                outputs[v] = [torch.tensor(list(built[v].get_current_losses().values()))]
    for v in variants:
        if v not in flops and "--compile" not in variant_flags(v, args.device):  # no warm-up: one more run
            flops[v] = count_flops(step(v))
        if v not in flops:  # compiled variants compute what their eager counterparts do
            eager = [f for f in variant_flags(v, args.device) if f != "--compile"]
            twin = build_model(phase, eager, VARIANTS[v][1], args.device, root)
            twin.nets()["G_T"].load_state_dict(built[v].nets()["G_T"].state_dict())
            twin.nets()["G_R"].load_state_dict(built[v].nets()["G_R"].state_dict())
            twin.set_input(data)
            flops[v] = count_flops(twin.optimize_parameters if phase == "train" else twin.test)
            del twin
        entry = results.setdefault(v, {"flags": variant_flags(v, args.device)})
        entry[f"{key}_cudnn_benchmark"] = torch.backends.cudnn.benchmark  # as the phase's models set it
        median = statistics.median(times[v])
        entry[f"{key}_s"] = median
        entry[f"{key}_times_s"] = times[v]
        entry[f"{key}_peak_mb"] = max(peaks[v])
        entry[f"{key}_peak_delta_mb"] = max(deltas[v])
        entry[f"{key}_gflop"] = flops[v] / 1e9
        entry[f"{key}_tflops"] = flops[v] / median / 1e12
        if "plain" in outputs and v != "plain":
            ref, got = outputs["plain"], outputs[v]
            if phase == "test":  # images in [0, 1]: the largest difference over T_1..T_3 and R_1..R_3
                entry[f"{key}_max_abs_diff_vs_plain"] = max(float((a - b).abs().max()) for a, b in zip(ref, got))
            else:  # the losses of the first iteration, same weights, data and dropout masks
                rel = (got[0] - ref[0]).abs() / ref[0].abs().clamp_min(1e-12)
                entry[f"{key}_loss_max_rel_diff_vs_plain"] = float(rel.max())


def fmt_row(cells: list[str], widths: list[int]) -> str:
    """Return one markdown table row."""
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"


def print_table(report: dict) -> None:
    """Print the results as a markdown table (time, speed-up over plain, peak memory, achieved share of peak)."""
    keys = ["train_iter"] + [f"test_{s}" for s in report["settings"]["test_sizes"]]
    labels = {"train_iter": f"train iter ({report['settings']['train_batch']}x{report['settings']['train_size']}²)"}
    labels.update({f"test_{s}": f"test {s}²" for s in report["settings"]["test_sizes"]})
    header = ["variant", "run", "median s", "vs plain", "peak MiB", "Δ MiB", "GFLOP", "TFLOP/s", "% of matmul",
              "max diff"]
    rows = []
    variants = report["variants"]
    plain = variants.get("plain", {})
    for key in keys:
        for name, entry in variants.items():
            if f"{key}_s" not in entry:
                continue
            peak_tflops = report["matmul_tflops"]["amp" if "--amp" in entry["flags"] else "fp32"]
            ratio = entry[f"{key}_s"] / plain[f"{key}_s"] if f"{key}_s" in plain else float("nan")
            diff = entry.get(f"{key}_max_abs_diff_vs_plain", entry.get(f"{key}_loss_max_rel_diff_vs_plain"))
            rows.append([name, labels[key], f"{entry[f'{key}_s']:.3f}", f"{ratio:.2f}x",
                         f"{entry[f'{key}_peak_mb']:.0f}", f"{entry[f'{key}_peak_delta_mb']:.0f}",
                         f"{entry[f'{key}_gflop']:.1f}", f"{entry[f'{key}_tflops']:.3f}",
                         f"{100 * entry[f'{key}_tflops'] / peak_tflops:.0f}%" if peak_tflops else "n/a",
                         "-" if diff is None else f"{diff:.1e}"])
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    print(fmt_row(header, widths))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(fmt_row(row, widths))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--variants", default="plain,fast", help="comma-separated variant names, or all")
    parser.add_argument("--sizes", default="full",
                        help="full (train 256, test 256,512,1024), tiny (train 32, test 32,64; a smoke run) or "
                             "comma-separated test sizes")
    parser.add_argument("--train_size", type=int, default=None, help="training crop (default 256; tiny: 32)")
    parser.add_argument("--train_batch", type=int, default=2, help="training batch size")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant and measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (compilation, caches)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    parser.add_argument("--skip_train", action="store_true", help="do not measure the training iteration")
    parser.add_argument("--skip_data", action="store_true", help="do not measure the data pipeline")
    parser.add_argument("--data_samples", type=int, default=None,
                        help="samples timed through the data pipeline (default 100; tiny: 6)")
    parser.add_argument("--data_workers", type=int, default=2,
                        help="--num_threads (DataLoader worker processes) for the data pipeline measurement")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.sizes in SIZE_PRESETS:
        train_size, test_sizes = SIZE_PRESETS[args.sizes]
    else:
        train_size, test_sizes = 256, [int(s) for s in args.sizes.split(",") if s.strip()]
    args.train_size = args.train_size or train_size
    args.test_sizes = test_sizes
    if args.data_samples is None:
        args.data_samples = 6 if args.sizes == "tiny" else 100
    if any(s % 4 for s in [args.train_size, *test_sizes]):
        parser.error("sizes must be multiples of 4")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def select_variants(spec: str, device: str) -> list[str]:
    """Return the variants to run, plain first; 'all' leaves out AMP where the device lacks it, compile on the CPU."""
    if spec == "all":
        names = [v for v, (_, _, needs_amp) in VARIANTS.items() if amp_available(device) or not needs_amp]
        if device != "cuda":
            names.remove("compile")  # minutes of C++ compilation per shape on a small CPU: ask for it by name
    else:
        names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)} or all")
    no_amp = [v for v in names if VARIANTS[v][2] and not amp_available(device)]
    if no_amp:
        raise SystemExit(f"variant(s) {no_amp} need AMP: --device cuda, or a CPU with bfloat16 instructions "
                         "(AVX512-BF16 or AMX), which this one lacks")
    return sorted(set(names), key=lambda v: (v != "plain", names.index(v)))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table and return (and optionally write) the report."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    variants = select_variants(args.variants, args.device)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    if args.device == "cuda":
        name = torch.cuda.get_device_name(0)
        amp_dtype = resolve_amp("auto", device)  # bf16 only where the GPU has it natively, as --amp decides
        matmul = {"fp32": matmul_tflops(device, torch.float32, 8192), "amp": matmul_tflops(device, amp_dtype, 8192)}
    else:
        name = cpu_model()
        amp_dtype = torch.bfloat16 if amp_available("cpu") else None
        matmul = {"fp32": matmul_tflops(device, torch.float32, 2048),
                  "amp": matmul_tflops(device, amp_dtype, 2048) if amp_dtype else None}
    print(f"device: {args.device} ({name}); cores usable {usable_cores()}; torch {torch.__version__}; "
          f"torch.get_num_threads() = {torch.get_num_threads()}; Python {platform.python_version()}")
    print(f"matmul throughput: fp32 {matmul['fp32']:.3f} TFLOP/s"
          + (f", {str(amp_dtype).split('.')[-1]} {matmul['amp']:.3f} TFLOP/s" if matmul["amp"] else ""))
    print(f"variants: {', '.join(variants)}; train {args.train_batch}x{args.train_size}², test sizes "
          f"{args.test_sizes}; {args.warmup} warm-up + {args.repeats} timed runs each, interleaved", flush=True)
    report: dict[str, Any] = {
        "device": {"type": args.device, "name": name, "cores_usable": usable_cores(),
                   "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                   "python": platform.python_version(),
                   "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32) if args.device == "cuda" else None,
                   "fp32_matmul_peak_tf32": (bool(torch.backends.cudnn.allow_tf32) if args.device == "cuda"
                                             else None),
                   "amp_dtype": str(amp_dtype).split(".")[-1] if amp_dtype else None},
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "train_size": args.train_size,
                     "train_batch": args.train_batch, "test_sizes": args.test_sizes, "variants": variants},
        "matmul_tflops": matmul,
        "variants": {},
    }
    results: dict[str, dict] = report["variants"]
    with tempfile.TemporaryDirectory(prefix="ibcln_benchmark_") as root:
        if not args.skip_train:
            bench_phase("train", args.train_size, variants, args, root, results)
            print("  train done: " + ", ".join(f"{v} {results[v]['train_iter_s']:.3f}s" for v in variants),
                  flush=True)
        for size in args.test_sizes:
            bench_phase("test", size, variants, args, root, results)
            print(f"  test {size}² done: " + ", ".join(f"{v} {results[v][f'test_{size}_s']:.3f}s" for v in variants),
                  flush=True)
        if not args.skip_data:
            data_root = os.path.join(root, "data")
            write_photos(data_root)
            crop = args.train_size
            rate = measure(data_root, args.data_workers, args.data_samples, 2, args.train_batch, crop)
            report["data"] = {"samples_per_s": rate, "num_threads": args.data_workers, "crop_size": crop,
                              "samples": args.data_samples}
    measured = ([] if args.skip_train else ["train_iter"]) + [f"test_{s}" for s in args.test_sizes]
    if "plain" in results:
        report["speedup_vs_plain"] = {v: {k: results["plain"][f"{k}_s"] / e[f"{k}_s"] for k in measured}
                                      for v, e in results.items() if v != "plain"}
    report["data_samples_per_s"] = report.get("data", {}).get("samples_per_s")
    print()
    print_table(report)
    reads = {v: (e["train_iter_host_reads"], e["train_iter_cuda_syncs"]) for v, e in results.items()
             if "train_iter_host_reads" in e}
    if reads:
        print("\nreads of tensor values by the project's code in one training step whose losses are read (as when "
              "printed): " + ", ".join(f"{v} {n}" + (f" ({c} synchronizing CUDA calls)" if c is not None else "")
                                       for v, (n, c) in reads.items()))
    if report["data_samples_per_s"] is not None:
        print(f"\ndata pipeline: {report['data_samples_per_s']:.1f} samples/s (--num_threads {args.data_workers}, "
              f"{args.train_size}² crops, synthetic mixtures)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
