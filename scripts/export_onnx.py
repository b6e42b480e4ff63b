"""Export the whole IBCLN cascade (I -> T_k, R_k) as one ONNX graph with dynamic batch, height and width.

Usage: python scripts/export_onnx.py --weights DIR --out ibcln.onnx [--epoch final] [--steps 3] [--opset N]
                                     [--benchmark 256,512] [--repeats 5]

The graph takes "image", float32 (N, 3, H, W) in [0, 1] with H and W multiples of 4 (reflect-pad the bottom
and right, then crop the outputs back, as the Python API does), and returns "T" and "R", float32 of the same
shape, clamped to [0, 1]. It runs in onnxruntime (or any ONNX runtime) without this project's code. Export
uses torch's recommended exporter (torch.onnx.export with dynamo=True, built on torch.export), which needs
the onnx and onnxscript packages; the check after export and --benchmark need onnxruntime
(pip install -e .[onnx] installs all three). After writing the file, the script runs it in onnxruntime on a
random 64x96 input and prints the largest difference from PyTorch. --benchmark times onnxruntime against
PyTorch (fp32, the fast path: channels_last on the CPU) at the given square sizes, interleaved, medians.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np
import torch

try:
    from models.api import DEFAULT_WEIGHTS, load_ibcln
    from models.ibcln_model import N_STEPS
    from util.errors import UserError, exit_on_user_error
except ModuleNotFoundError as err:  # a clone where the project is not installed: only scripts/ is on sys.path
    sys.exit(f"error: {err}: install this project first: pip install -e . in the repository root")

EXPORT_PACKAGES = ("onnx", "onnxscript")
EXTRA = "onnx"  # pyproject.toml's extra that installs them and onnxruntime
MAX_SIDE = 16384  # the largest height and width the graph accepts (a bound torch.export needs)


def require(package: str, purpose: str) -> object:
    """Return the imported package; a missing one is a UserError naming it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{purpose} needs the '{package}' package: pip install {package} (or, in a checkout, "
                        f"pip install -e .[{EXTRA}])") from None


def export(cascade: torch.nn.Module, out: str, opset: int | None = None) -> None:
    """Write cascade (I -> T, R) to out as ONNX with dynamic N, H = 4h and W = 4w."""
    for package in EXPORT_PACKAGES:
        require(package, "ONNX export")
    batch = torch.export.Dim("batch", min=1, max=1024)
    h = torch.export.Dim("h", min=1, max=MAX_SIDE // 4)
    w = torch.export.Dim("w", min=1, max=MAX_SIDE // 4)
    # An example whose batch and sides are not 1 and differ, so that none is specialised to its example value.
    example = torch.rand(2, 3, 64, 96)
    program = torch.onnx.export(cascade, (example,), dynamo=True, opset_version=opset, input_names=["image"],
                                output_names=["T", "R"],
                                dynamic_shapes={"image": {0: batch, 2: 4 * h, 3: 4 * w}})
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    program.save(out)


def ort_session(path: str, threads: int | None = None):
    """Return an onnxruntime CPU InferenceSession for the model file (threads: intra-op threads, None = default)."""
    ort = require("onnxruntime", "running the ONNX model")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def max_difference(session, cascade: torch.nn.Module, image: torch.Tensor) -> tuple[float, float]:
    """Return the largest |onnxruntime - PyTorch| of T and of R for image (N, 3, H, W)."""
    with torch.inference_mode():
        t, r = cascade(image)
    onnx_t, onnx_r = session.run(["T", "R"], {"image": image.numpy()})
    return float(np.abs(onnx_t - t.numpy()).max()), float(np.abs(onnx_r - r.numpy()).max())


def benchmark(session, model, sizes: list[int], repeats: int) -> list[tuple[int, float, float]]:
    """Return (size, onnxruntime median s, PyTorch median s) per square size: 1 warm-up, then interleaved runs."""
    rows = []
    for size in sizes:
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        array = image.numpy()
        times: dict[str, list[float]] = {"onnxruntime": [], "pytorch": []}
        runs = {"onnxruntime": lambda a=array: session.run(["T", "R"], {"image": a}),
                "pytorch": lambda i=image: model.remove_reflection(i, tile=0)}
        for k in range(repeats + 1):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if k:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        rows.append((size, statistics.median(times["onnxruntime"]), statistics.median(times["pytorch"])))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="folder holding <epoch>_net_G_T/G_R.pth")
    parser.add_argument("--epoch", default="final", help="checkpoint prefix: final, latest, 5, ...")
    parser.add_argument("--out", default="ibcln.onnx", help="the ONNX file to write")
    parser.add_argument("--steps", type=int, default=N_STEPS, choices=[1, 2, 3], help="export T_k, R_k of step k")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--benchmark", default="", help="comma-separated square sizes to time, e.g. 256,512")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size and runtime (median)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Export, check the file in onnxruntime, and optionally time it against PyTorch."""
    args = parse_args(argv)
    sizes = [int(s) for s in args.benchmark.split(",") if s.strip()]
    if any(s % 4 or s <= 0 for s in sizes):
        raise UserError(f"--benchmark {args.benchmark}: sizes must be positive multiples of 4")
    # The graph is exported in the standard NCHW layout on the CPU: ONNX runtimes choose their own layout.
    model = load_ibcln(args.weights, device="cpu", epoch=args.epoch, channels_last=False)
    cascade = model.as_module(args.steps).eval()
    start = time.perf_counter()
    export(cascade, args.out, args.opset)
    size_mb = os.path.getsize(args.out) / 2**20
    print(f"wrote {args.out} ({size_mb:.1f} MiB, T_{args.steps} and R_{args.steps}) in "
          f"{time.perf_counter() - start:.1f} s")
    session = ort_session(args.out, torch.get_num_threads())
    diff_t, diff_r = max_difference(session, cascade, torch.rand(1, 3, 64, 96))
    print(f"onnxruntime vs PyTorch on a 64x96 input: max |difference| T {diff_t:.1e}, R {diff_r:.1e}")
    if sizes:
        fast = load_ibcln(args.weights, device="cpu", epoch=args.epoch)  # the API's default, fast path
        print(f"timing on {torch.get_num_threads()} thread(s), PyTorch {fast.describe()}, medians of "
              f"{args.repeats}:")
        for size, ort_s, torch_s in benchmark(session, fast, sizes, args.repeats):
            print(f"  {size}x{size}: onnxruntime {ort_s:.2f} s, PyTorch {torch_s:.2f} s "
                  f"(onnxruntime {ort_s / torch_s:.2f}x PyTorch's time)")


if __name__ == "__main__":
    exit_on_user_error(main)
