"""The GPU check's steps, each with its own time limit (started by scripts/gpu_check.sh, whose header says how).

Writes <out>/summary.json (per step: status passed|failed|skipped, seconds, details; rewritten after every step,
so a run cut short keeps what it did) and <out>/gpu_check.log (every command and its output). Exit status 1
if any step failed. --cpu-dry-run runs every step on the CPU at tiny sizes (the JSON says what ran instead of
the CUDA-only parts), so that the script itself is tested without a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Check:
    """The run's settings, its log and its summary."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.cpu_dry_run
        self.out = Path(args.out).resolve()
        self.work = self.out / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.log_path = self.out / "gpu_check.log"
        self.log_path.write_text("")
        self.python = sys.executable
        self.deadline = time.time() + args.budget
        self.gpu = "-1" if self.dry else "0"
        self.summary: dict[str, Any] = {"mode": "cpu-dry-run" if self.dry else "cuda", "python": self.python,
                                        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": []}

    def log(self, text: str) -> None:
        """Append text to the log and echo it."""
        print(text, flush=True)
        with open(self.log_path, "a") as f:
            f.write(text + "\n")

    def run(self, command: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
        """Run command from the repository root within timeout seconds; return (exit status, output), 124: timed out."""
        timeout = min(timeout, self.deadline - time.time())
        require(timeout > 5, "out of time (--budget)")
        self.log("$ " + " ".join(command))
        environment = self.environment(env)
        proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            status = 124
            output += f"\n[gpu_check: killed after {timeout:.0f} s]"
        self.log(output.rstrip()[-20000:] + f"\n[exit {status}]")
        return status, output

    def environment(self, extra: dict | None = None) -> dict:
        """Return the subprocesses' environment: the repository on PYTHONPATH; one thread each in a dry run."""
        threads = {"OMP_NUM_THREADS": "1"} if self.dry else {}
        return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **threads,
                **(extra or {})}

    def record(self, number: int, name: str, fn: Callable[[], dict]) -> None:
        """Run one step, catching any exception as a failure, and rewrite summary.json."""
        self.log(f"\n===== step {number}: {name} =====")
        start = time.time()
        try:
            details = fn()
            status = details.pop("status", "passed")
        except StepFailed as err:
            status, details = "failed", {"error": str(err), **err.details}
        except Exception as err:  # a bug in the check itself must not hide the other steps
            status, details = "failed", {"error": f"{type(err).__name__}: {err}"}
        entry = {"step": number, "name": name, "status": status, "seconds": round(time.time() - start, 1),
                 "details": details}
        self.summary["steps"].append(entry)
        self.log(f"----- step {number} {status} in {entry['seconds']} s: {json.dumps(details)[:2000]}")
        self.write_summary()

    def write_summary(self) -> None:
        """Write summary.json with the overall verdict."""
        self.summary["passed"] = all(s["status"] != "failed" for s in self.summary["steps"])
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2))


class StepFailed(RuntimeError):
    """A check found a problem; details go to the summary."""

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details


def require(ok: bool, message: str, **details: Any) -> None:
    """Raise StepFailed(message) unless ok."""
    if not ok:
        raise StepFailed(message, **details)


# ----- step 1: environment ---------------------------------------------------------------------------------------

ENV_PROBE = """
import json, torch, importlib.util
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device_count": torch.cuda.device_count(),
        "modules": {m: importlib.util.find_spec(m) is not None for m in ("dominate", "visdom", "pytest", "skimage")}}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16=torch.cuda.is_bf16_supported())
else:
    from models.ibcln_model import cpu_has_native_bf16
    info.update(cpu_bf16=cpu_has_native_bf16())
print("ENV " + json.dumps(info))
"""


def step_environment(c: Check) -> dict:
    status, output = c.run([c.python, "-c", ENV_PROBE], 120)
    line = next((x for x in output.splitlines() if x.startswith("ENV ")), None)
    require(status == 0 and line is not None, "could not read the environment")
    info = json.loads(line[4:])
    c.summary["environment"] = info
    if not c.dry:
        require(info["cuda_available"], "torch sees no CUDA device", **info)
    return info


# ----- step 2: the tests with CUDA variants ----------------------------------------------------------------------

def step_tests(c: Check) -> dict:
    if c.dry:  # the CPU side of the same checks; tests/test_cuda.py skips itself here, with its reason
        command = [c.python, "-m", "pytest", "-q", "-rs", "tests/test_cuda.py"]
    else:
        command = [c.python, "-m", "pytest", "-q", "-rs", "-m", "cuda", "tests/test_cuda.py"]
    status, output = c.run(command, 240, env={"IBCLN_TEST_THREADS": "1" if c.dry else "4"})
    tail = [x for x in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in ", x)]
    details = {"ran": "tests/test_cuda.py (marker cuda)" if not c.dry else
               "tests/test_cuda.py, which skips itself without CUDA (the CPU checks are the regular test suite's)",
               "pytest": tail[-1].strip("= ") if tail else "no pytest summary line (see the log)"}
    require(status == 0, "tests failed (or pytest is missing: see the header of scripts/gpu_check.sh)", **details)
    return details


# ----- step 3: training smoke runs -------------------------------------------------------------------------------

def smoke_data(c: Check) -> Path:
    """Return the demo dataset (scripts/make_demo_data.py: scikit-image's bundled photos, no download)."""
    root = c.work / "demo_data"
    if not (root / "manifest.json").is_file():
        status, _ = c.run([c.python, "scripts/make_demo_data.py", str(root), "--seed", "0"], 180)
        require(status == 0, "scripts/make_demo_data.py failed")
    return root


def train_command(c: Check, name: str, *flags: str) -> list[str]:
    """Return the train.py command of a smoke run: a few iterations at tiny (dry run) or 256² sizes."""
    size = ["--load_size", "40", "--crop_size", "32", "--dataset_size", "4", "--num_threads", "0"] if c.dry else \
        ["--load_size", "286", "--crop_size", "256", "--dataset_size", "8", "--num_threads", "2"]
    return [c.python, "train.py", "--dataroot", str(smoke_data(c)), "--name", name, "--model", "IBCLN",
            "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.work / "checkpoints"), "--display_id", "-1", "--no_html",
            "--vgg_weights", c.args.vgg_weights, "--batch_size", "2", "--niter", "1", "--print_freq", "2",
            "--seed", "1", *size, *flags]


def training_variants(c: Check) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Return (name -> extra flags) of the smoke runs this mode can do, and the ones left out with the reason."""
    variants = {"fp32": [], "amp_bf16": ["--amp", "bf16"], "amp_fp16": ["--amp", "fp16"],
                "channels_last": ["--channels_last"], "compile": ["--compile"]}
    left_out: dict[str, str] = {}
    if c.dry:
        left_out["amp_fp16"] = "float16 autocast is CUDA-only (the CPU equivalent is --amp bf16)"
        left_out["compile"] = "minutes of C++ compilation on a CPU"
        left_out["amp_bf16"] = "slow first steps of oneDNN bf16 on a small CPU (tests/test_speed_options.py covers it)"
        left_out["channels_last"] = "time: step 5 runs test.py --channels_last (tests/test_speed_options.py trains it)"
    return {k: v for k, v in variants.items() if k not in left_out}, left_out


def step_training(c: Check) -> dict:
    variants, left_out = training_variants(c)
    results: dict[str, str] = {}
    for name, flags in variants.items():
        status, output = c.run(train_command(c, f"smoke_{name}", *flags), 150)
        ok = status == 0 and (c.work / "checkpoints" / f"smoke_{name}" / "final_net_G_T.pth").is_file()
        results[name] = "passed" if ok else f"failed (exit {status})"
    status, output = c.run(train_command(c, "smoke_fp32", "--continue_train", "--niter", "2"), 150)
    resumed = status == 0 and "resuming after epoch 1" in output
    results["continue_train"] = "passed" if resumed else f"failed (exit {status})"
    details = {"runs": results, "left_out": left_out, "device": "cuda:0" if not c.dry else "cpu"}
    require(all(v == "passed" for v in results.values()), "a training run failed", **details)
    return details


# ----- step 4: torchrun ------------------------------------------------------------------------------------------

def step_torchrun(c: Check) -> dict:
    gpus = c.summary.get("environment", {}).get("device_count", 0)
    counts = [2] if c.dry else ([1, 2] if gpus >= 2 else [1])
    results = {}
    for n in counts:
        command = [c.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                   *train_command(c, f"ddp{n}")[1:]]
        status, output = c.run(command, 180)
        synced = n == 1 or f"DDP: {n} processes" in output
        results[f"{n} process(es)"] = "passed" if status == 0 and synced else f"failed (exit {status})"
    details = {"backend": "gloo (CPU dry run)" if c.dry else "nccl", "runs": results,
               "note": "with one process torchrun sets WORLD_SIZE=1, which train.py runs as a plain single process: "
                       "nccl DDP itself needs 2 GPUs"}
    require(all(v == "passed" for v in results.values()), "a torchrun run failed", **details)
    return details


# ----- step 5: test.py on a large image, whole and tiled ---------------------------------------------------------

MEASURE_TEST = """
import json, resource, runpy, sys, time, torch
sys.argv = ["test.py", *sys.argv[1:]]
start = time.time()
try:
    runpy.run_path("test.py", run_name="__main__")
finally:
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("PEAK " + json.dumps({"peak_mib": round(peak), "seconds": round(time.time() - start, 1),
                                "memory": "torch.cuda.max_memory_allocated" if torch.cuda.is_available()
                                else "process peak RSS"}))
"""


def step_large_test(c: Check) -> dict:
    import numpy as np
    from PIL import Image

    checkpoint = c.work / "checkpoints" / "smoke_fp32" / "final_net_G_T.pth"
    require(checkpoint.is_file(), "no checkpoint from step 3's fp32 run")
    size, tile, overlap = (96, 64, 16) if c.dry else (2048, 1024, 128)
    root = c.work / "large"
    photo = Image.open(next((smoke_data(c) / "testB").glob("*.png"))).convert("RGB").resize((size, size))
    for folder in ("testB", "testA1"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        photo.save(root / folder / "large.png")
    results = {}
    for label, flags in (("whole", []), ("tiled", ["--tile", str(tile), "--tile_overlap", str(overlap)])):
        args = ["--dataroot", str(root), "--name", "smoke_fp32", "--model", "IBCLN", "--epoch", "final",
                "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.work / "checkpoints"),
                "--results_dir", str(c.work / f"large_{label}"), "--keep_size", "--channels_last", *flags]
        status, output = c.run([c.python, "-c", MEASURE_TEST, *args], 150)
        line = next((x for x in output.splitlines() if x.startswith("PEAK ")), None)
        results[label] = {"status": "passed" if status == 0 else f"failed (exit {status})",
                          **(json.loads(line[5:]) if line else {})}
    details = {"image": f"{size}x{size}", "tile": tile, "tile_overlap": overlap, **results}
    require(all(r["status"] == "passed" for r in results.values()), "test.py failed", **details)
    arrays = [np.asarray(Image.open(c.work / f"large_{k}" / "smoke_fp32" / "test_final" / "images" /
                                    "large_fake_Ts_03.png"), dtype=np.int16) for k in ("whole", "tiled")]
    details["tiled_vs_whole_max_grey_levels"] = int(np.abs(arrays[0] - arrays[1]).max())
    return details


# ----- step 6: the benchmark -------------------------------------------------------------------------------------

def step_benchmark(c: Check) -> dict:
    path = c.out / "benchmark.json"
    if c.dry:
        command = [c.python, "scripts/benchmark.py", "--device", "cpu", "--variants", "plain,fast_fp32", "--sizes",
                   "32", "--train_size", "32", "--repeats", "1", "--warmup", "1", "--threads", "1", "--skip_data",
                   "--json", str(path)]
    else:
        command = [c.python, "scripts/benchmark.py", "--device", "cuda", "--variants", "all", "--sizes", "full",
                   "--repeats", "2", "--warmup", "1", "--skip_data", "--json", str(path)]
    status, _ = c.run(command, 100 if c.dry else 180)
    require(status == 0 and path.is_file(), f"scripts/benchmark.py failed (exit {status})")
    report = json.loads(path.read_text())
    peaks = report["matmul_tflops"]
    rows = {}
    for name, entry in report["variants"].items():
        peak = peaks["amp" if "--amp" in entry["flags"] else "fp32"]
        rows[name] = {k: round(v, 4) for k, v in entry.items() if k.endswith("_s") and isinstance(v, float)}
        rows[name].update({f"{k[:-7]}_share_of_matmul": round(v / peak, 4) for k, v in entry.items()
                           if k.endswith("_tflops") and peak})
        rows[name]["host_reads_per_step"] = entry.get("train_iter_host_reads")
        rows[name]["cuda_syncs_per_step"] = entry.get("train_iter_cuda_syncs")
    return {"json": str(path), "device": report["device"], "matmul_tflops": peaks, "variants": rows,
            "speedup_vs_plain": report.get("speedup_vs_plain")}


# ----- step 7: the timed quality run -----------------------------------------------------------------------------

def benchmark_sets(c: Check) -> dict[str, Path]:
    """Return the scoring sets found under --benchmarks (CEILNet synthetic 100 and the five real pairs)."""
    base = Path(c.args.benchmarks)
    found = {name: base / folder for name, folder in (("ceilnet100", "ceilnet_synthetic100"), ("real5", "real_pairs5"))
             if (base / folder / "testB").is_dir()}
    require(bool(found), f"no benchmark sets under {base} (--benchmarks; copy ../shared/benchmarks into the checkout)")
    return found


def timed_training(c: Check, command: list[str], seconds: float) -> tuple[int, str]:
    """Run train.py for `seconds`, then stop it with Ctrl-C (it saves 'latest'); return (exit status, output)."""
    c.log("$ " + " ".join(command) + f"   [stopped with SIGINT after {seconds:.0f} s]")
    proc = subprocess.Popen(command, cwd=ROOT, env=c.environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    c.log(output.rstrip()[-20000:] + f"\n[exit {proc.returncode}]")
    return proc.returncode, output


def score_with_evaluate(c: Check, name: str, sets: dict[str, Path]) -> dict:
    """Return {set: {images, PSNR_I, SSIM_I, PSNR_T_3, SSIM_T_3}} from evaluate.py's JSON on the sets."""
    path = c.work / "evaluate.json"
    limit = ["--num_test", "2", "--max_size", "64"] if c.dry else []
    status, _ = c.run([c.python, "evaluate.py", "--name", name, "--epoch", "latest", "--checkpoints_dir",
                       str(c.work / "checkpoints"), "--results_dir", str(c.work / "results"), "--gpu_ids", c.gpu,
                       "--json", str(path), *limit, "--sets", *[f"{k}={v}" for k, v in sets.items()]], 300)
    require(status == 0 and path.is_file(), "evaluate.py failed")
    report = json.loads(path.read_text())
    return {k: {"images": v["images"], "PSNR_I": v["psnr"]["I"], "SSIM_I": v["ssim"]["I"],
                "PSNR_T_3": v["psnr"]["T_3"], "SSIM_T_3": v["ssim"]["T_3"]} for k, v in report.items() if k in sets}


def step_quality(c: Check) -> dict:
    """Train with the fast settings for --minutes on a synthetic set, validate each epoch, score T_3 against I."""
    sets = benchmark_sets(c)
    # --photos (e.g. the BSDS500 photos) or, without it, the demo data's training photos (scikit-image's).
    photos = c.args.photos or str(smoke_data(c) / "trainA1")
    details: dict[str, Any] = {"minutes": c.args.minutes, "vgg_weights": c.args.vgg_weights, "photos": photos}
    data = c.work / "synthetic_train"
    if data.exists():
        shutil.rmtree(data)
    held_out = 4 if c.dry else 50
    status, _ = c.run([c.python, "scripts/make_synthetic_set.py", "--train", "--photos", photos, "--out", str(data),
                       "--n", str(held_out), "--seed", "1", "--size", "64" if c.dry else "256"], 240)
    require(status == 0, "scripts/make_synthetic_set.py failed")
    fast = [] if c.dry else ["--channels_last", "--amp"]
    size = ["--load_size", "40", "--crop_size", "32", "--dataset_size", "8", "--num_threads", "0"] if c.dry else \
        ["--load_size", "286", "--crop_size", "256", "--dataset_size", "400", "--num_threads", "6"]
    command = [c.python, "train.py", "--dataroot", str(data), "--name", "quality", "--model", "IBCLN",
               "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.work / "checkpoints"), "--display_id", "-1",
               "--no_html", "--vgg_weights", c.args.vgg_weights, "--batch_size", "2",
               # The dry run trains one tiny epoch (and validates it); on a GPU the time limit stops training.
               "--niter", "1" if c.dry else "1000",
               "--print_freq", "200", "--save_epoch_freq", "0", "--seed", "1", "--overwrite",
               "--val_dataroot", str(data / "val"), "--val_max", str(held_out), *size, *fast]
    scoring = 20 if c.dry else 75  # seconds kept for scoring after the training
    # The dry run's one epoch may take longer than --minutes on a loaded machine: it gets up to 2 minutes.
    wanted = max(c.args.minutes * 60, 120) if c.dry else c.args.minutes * 60
    seconds = min(wanted, c.deadline - time.time() - scoring)
    require(seconds > 10, "out of time (--budget) for the quality run")
    details["minutes_limit"] = round(seconds / 60, 2)
    status, output = timed_training(c, command, seconds)
    epochs = [x for x in output.splitlines() if x.startswith("end of epoch")]
    details.update(train_exit=status, epochs_done=len(epochs), fast_flags=fast)
    require((c.work / "checkpoints" / "quality" / "latest_net_G_T.pth").is_file(), "no 'latest' checkpoint saved",
            **details)
    val_log = c.work / "checkpoints" / "quality" / "val_log.csv"
    if val_log.is_file():
        with open(val_log, newline="") as f:
            details["validation"] = list(csv.DictReader(f))[-3:]
    scores = score_with_evaluate(c, "quality", sets)
    for entry in scores.values():
        entry["T_3_minus_I_PSNR"] = round(entry["PSNR_T_3"] - entry["PSNR_I"], 3)
    details["scores"] = scores
    return details


STEPS = [("environment", step_environment), ("tests with CUDA variants", step_tests),
         ("training smoke", step_training), ("torchrun", step_torchrun), ("test.py large image", step_large_test),
         ("benchmark", step_benchmark), ("timed quality run", step_quality)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU at tiny sizes (< 3 min)")
    parser.add_argument("--minutes", type=float, default=None, help="training time of the quality run (default 4; "
                        "dry run 0.33)")
    parser.add_argument("--photos", default=None, help="photo folder for the quality run's synthetic training set")
    parser.add_argument("--benchmarks", default=str(ROOT.parent / "shared" / "benchmarks"),
                        help="folder holding ceilnet_synthetic100/ and real_pairs5/")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "results" / "gpu_check"))
    parser.add_argument("--steps", default="1,2,3,4,5,6,7", help="comma-separated step numbers to run")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds for the whole check: step time limits and the quality run shrink to fit")
    parser.add_argument("--vgg_weights", default=None,
                        help="VGG19 of the perceptual loss: default imagenet when torch's cache holds it, else random")
    args = parser.parse_args(argv)
    if args.minutes is None:
        args.minutes = 0.33 if args.cpu_dry_run else 4.0
    if args.vgg_weights is None:
        cache = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
        args.vgg_weights = "imagenet" if (cache / "vgg19-dcbb9e9d.pth").is_file() else "random"
    args.steps = {int(s) for s in args.steps.split(",") if s.strip()}
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen steps; return the exit status (1 if any failed)."""
    check = Check(parse_args(argv))
    check.summary["settings"] = {k: v if not isinstance(v, set) else sorted(v) for k, v in vars(check.args).items()}
    for number, (name, fn) in enumerate(STEPS, 1):
        if number in check.args.steps:
            check.record(number, name, lambda fn=fn: fn(check))
    check.summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    check.write_summary()
    failed = [s["step"] for s in check.summary["steps"] if s["status"] == "failed"]
    check.log(f"\nsummary: {check.out / 'summary.json'}; " + (f"FAILED steps {failed}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
