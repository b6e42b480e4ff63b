"""The GPU check's steps, each within its share of the time budget (scripts/gpu_check.sh starts it; see its header).

Writes <out>/summary.json (per step: status passed|failed|skipped, seconds, its time limit, details; rewritten
after every step, so a run cut short keeps what it did) and <out>/gpu_check.log (every command and its output).
Exit status 1 if any step failed. --cpu-dry-run runs every step on the CPU at tiny sizes (the JSON says what
ran instead of the CUDA-only parts), so that the script itself is tested without a GPU.

Time: --budget seconds in all, split by STEP_SHARES (plan() gives every step's limit; they add up to the
budget). A step may use its limit plus whatever the steps before it left unused, never more, and each
command of a step gets its own part of the step's time, so no command can take the time of the ones after it.
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

from gpu_prepare import EXPECTED_INSTALLED, BundleError, install_bundle

ROOT = Path(__file__).resolve().parent.parent
# Seconds of each step at the default --budget of 480 (8 minutes); other budgets scale them (plan()).
STEP_SHARES = {1: 25, 2: 110, 3: 130, 4: 35, 5: 40, 6: 60, 7: 80}
DEFAULT_BUDGET = {"cuda": 480.0, "cpu-dry-run": 600.0}  # the dry run's CPU steps are slower on a small machine


def plan(budget: float, steps: list[int]) -> dict[int, float]:
    """Return each chosen step's time limit: the budget split in proportion to STEP_SHARES, adding up to it."""
    total = sum(STEP_SHARES[s] for s in steps)
    limits = {s: round(budget * STEP_SHARES[s] / total, 1) for s in steps}
    last = steps[-1]
    limits[last] = round(budget - sum(v for s, v in limits.items() if s != last), 1)
    return limits


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
        self.step_deadline = self.deadline
        self.gpu = "-1" if self.dry else "0"
        self.bundle = Path(args.bundle).resolve() if args.bundle else None
        self.site: Path | None = None  # where step 1 installs the bundle's wheels
        self.plan = plan(args.budget, sorted(args.steps))
        self.summary: dict[str, Any] = {"mode": "cpu-dry-run" if self.dry else "cuda", "python": self.python,
                                        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": args.budget,
                                        "plan_s": self.plan, "steps": []}

    def left(self) -> float:
        """Return the seconds left to the current step."""
        return self.step_deadline - time.time()

    def part(self, weight: float, pending: float) -> float:
        """Return a command's time: `weight` parts of the step's time left, shared with `pending` parts in all."""
        return self.left() * weight / pending

    def log(self, text: str) -> None:
        """Append text to the log and echo it."""
        print(text, flush=True)
        with open(self.log_path, "a") as f:
            f.write(text + "\n")

    def run(self, command: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
        """Run command from the repository root within timeout seconds (and the step's limit); return (status, output).

        Status 124: killed at the time limit.
        """
        timeout = min(timeout, self.left())
        require(timeout > 5, "out of time: this step's share of --budget is spent")
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
        """Return the subprocesses' environment: the repository (and the bundle's packages) on PYTHONPATH.

        One thread each in a dry run.
        """
        threads = {"OMP_NUM_THREADS": "1"} if self.dry else {}
        paths = [str(ROOT), *([str(self.site)] if self.site else []), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **threads, **(extra or {})}

    def record(self, number: int, name: str, fn: Callable[[], dict]) -> None:
        """Run one step within its limit (its plan, plus what earlier steps left), catching any exception as a failure.

        Rewrites summary.json.
        """
        start = time.time()
        pending = sum(self.plan[s] for s in self.plan if s >= number)
        limit = (self.deadline - start) * self.plan[number] / pending
        self.step_deadline = start + limit
        self.log(f"\n===== step {number}: {name} (at most {limit:.0f} s) =====")
        try:
            details = fn()
            status = details.pop("status", "passed")
        except StepFailed as err:
            status, details = "failed", {"error": str(err), **err.details}
        except Exception as err:  # a bug in the check itself must not hide the other steps
            status, details = "failed", {"error": f"{type(err).__name__}: {err}"}
        entry = {"step": number, "name": name, "status": status, "seconds": round(time.time() - start, 1),
                 "limit_s": round(limit, 1), "details": details}
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

NEEDED_MODULES = (*EXPECTED_INSTALLED, "dominate", "pytest")
ENV_PROBE = """
import json, importlib.util, sys, torch
from models.ibcln_model import cpu_has_native_bf16, cuda_has_native_bf16
info = {"python": ".".join(map(str, sys.version_info[:3])), "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device_count": torch.cuda.device_count(),
        "modules": {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    # bf16 counts only where it is native (torch's default answer includes emulated bf16, as on a T4 or V100).
    info.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16=cuda_has_native_bf16())
else:
    info.update(cpu_bf16=cpu_has_native_bf16())
print("ENV " + json.dumps(info))
"""


def step_environment(c: Check) -> dict:
    details: dict[str, Any] = {}
    if c.bundle is not None:
        try:
            details["bundle"] = install_bundle(c.bundle, c.out / "site", c.python)
        except BundleError as err:
            raise StepFailed(str(err)) from None
        c.site = c.out / "site"
    status, output = c.run([c.python, "-c", ENV_PROBE, *NEEDED_MODULES], 120)
    line = next((x for x in output.splitlines() if x.startswith("ENV ")), None)
    require(status == 0 and line is not None, "could not read the environment")
    info = json.loads(line[4:])
    c.summary["environment"] = info
    details.update(info)
    missing = [m for m, found in info["modules"].items() if not found]
    require(not missing, f"missing Python modules {missing}: give --bundle DIR, made with --prepare (see "
                         "scripts/gpu_check.sh)", **details)
    if not c.dry:
        require(info["cuda_available"], "torch sees no CUDA device", **details)
    return details


# ----- step 2: the tests with CUDA variants ----------------------------------------------------------------------

def step_tests(c: Check) -> dict:
    if c.dry:  # the CPU side of the same checks; tests/test_cuda.py skips itself here, with its reason
        command = [c.python, "-m", "pytest", "-q", "-rs", "tests/test_cuda.py"]
    else:
        command = [c.python, "-m", "pytest", "-q", "-rs", "-m", "cuda", "tests/test_cuda.py"]
    status, output = c.run(command, c.left(), env={"IBCLN_TEST_THREADS": "1" if c.dry else "4"})
    tail = [x for x in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in ", x)]
    details = {"ran": "tests/test_cuda.py (marker cuda)" if not c.dry else
               "tests/test_cuda.py, which skips itself without CUDA (the CPU checks are the regular test suite's)",
               "pytest": tail[-1].strip("= ") if tail else "no pytest summary line (see the log)"}
    require(status == 0, "tests failed (or pytest is missing: see the header of scripts/gpu_check.sh)", **details)
    return details


# ----- step 3: training smoke runs -------------------------------------------------------------------------------

def smoke_data(c: Check) -> Path:
    """Return the demo dataset: the bundle's, else made here by scripts/make_demo_data.py (scikit-image's photos)."""
    if c.bundle is not None and (c.bundle / "demo_data" / "manifest.json").is_file():
        return c.bundle / "demo_data"
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


# Parts of step 3's time per run: compiling takes longer than the eager runs.
RUN_WEIGHTS = {"fp32": 1, "amp_bf16": 1, "amp_fp16": 1, "channels_last": 1, "compile": 3, "continue_train": 1}


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
    elif not c.summary.get("environment", {}).get("bf16", True):
        left_out["amp_bf16"] = "this GPU has no native bfloat16 (--amp bf16 is refused there; --amp picks fp16)"
    return {k: v for k, v in variants.items() if k not in left_out}, left_out


def step_training(c: Check) -> dict:
    variants, left_out = training_variants(c)
    pending = sum(RUN_WEIGHTS[name] for name in variants) + RUN_WEIGHTS["continue_train"]
    results: dict[str, str] = {}
    for name, flags in variants.items():
        status, output = c.run(train_command(c, f"smoke_{name}", *flags), c.part(RUN_WEIGHTS[name], pending))
        pending -= RUN_WEIGHTS[name]
        ok = status == 0 and (c.work / "checkpoints" / f"smoke_{name}" / "final_net_G_T.pth").is_file()
        results[name] = "passed" if ok else f"failed (exit {status})"
    status, output = c.run(train_command(c, "smoke_fp32", "--continue_train", "--niter", "2"), c.left())
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
    for k, n in enumerate(counts):
        command = [c.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                   *train_command(c, f"ddp{n}")[1:]]
        status, output = c.run(command, c.part(1, len(counts) - k))
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
    for k, (label, flags) in enumerate((("whole", []), ("tiled", ["--tile", str(tile), "--tile_overlap",
                                                                   str(overlap)]))):
        args = ["--dataroot", str(root), "--name", "smoke_fp32", "--model", "IBCLN", "--epoch", "final",
                "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.work / "checkpoints"),
                "--results_dir", str(c.work / f"large_{label}"), "--keep_size", "--channels_last", *flags]
        status, output = c.run([c.python, "-c", MEASURE_TEST, *args], c.part(1, 2 - k))
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

# The compiled variants (compile, and fast, which compiles on CUDA) compile for every size: more than the step's
# share of the budget; step 3 trains with --compile.
BENCHMARK_VARIANTS = "plain,channels_last,amp,fast_fp32"

def step_benchmark(c: Check) -> dict:
    path = c.out / "benchmark.json"
    if c.dry:
        command = [c.python, "scripts/benchmark.py", "--device", "cpu", "--variants", "plain,fast_fp32", "--sizes",
                   "32", "--train_size", "32", "--repeats", "1", "--warmup", "1", "--threads", "1", "--skip_data",
                   "--json", str(path)]
    else:
        command = [c.python, "scripts/benchmark.py", "--device", "cuda", "--variants", BENCHMARK_VARIANTS,
                   "--sizes", "256,1024", "--repeats", "2", "--warmup", "1", "--skip_data", "--json", str(path)]
    status, _ = c.run(command, c.left())
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
            "speedup_vs_plain": report.get("speedup_vs_plain"),
            "left_out": {} if c.dry else {"compile, fast": "compile time per size exceeds the step's share"}}


# ----- step 7: the timed quality run -----------------------------------------------------------------------------

def scoring_sets(c: Check) -> dict[str, Path]:
    """Return the quality run's scoring sets: the demo data's held-out test pairs and each set of the benchmarks.

    Benchmarks: the bundle's benchmarks/ folder, and --benchmarks; a set is a folder with testB/ (and testA1/).
    """
    sets = {"demo_test": smoke_data(c)}
    folders = [c.bundle / "benchmarks"] if c.bundle is not None else []
    folders += [Path(c.args.benchmarks)] if c.args.benchmarks else []
    for folder in folders:
        sets.update({p.name: p for p in sorted(folder.iterdir()) if (p / "testB").is_dir()} if folder.is_dir() else {})
    return sets


def timed_training(c: Check, command: list[str], seconds: float, grace: float) -> tuple[int, str]:
    """Run train.py for `seconds`, then Ctrl-C it (it saves 'latest', given `grace` s); return (status, output)."""
    c.log("$ " + " ".join(command) + f"   [stopped with SIGINT after {seconds:.0f} s]")
    proc = subprocess.Popen(command, cwd=ROOT, env=c.environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        output, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=grace)
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
                       "--json", str(path), *limit, "--sets", *[f"{k}={v}" for k, v in sets.items()]], c.left())
    require(status == 0 and path.is_file(), "evaluate.py failed")
    report = json.loads(path.read_text())
    return {k: {"images": v["images"], "PSNR_I": v["psnr"]["I"], "SSIM_I": v["ssim"]["I"],
                "PSNR_T_3": v["psnr"]["T_3"], "SSIM_T_3": v["ssim"]["T_3"]} for k, v in report.items() if k in sets}


# Parts of step 7's time: making the training set, training, saving after Ctrl-C, scoring.
QUALITY_PARTS = {"make_set": 1.0, "train": 5.5, "save": 1.0, "score": 2.5}


def step_quality(c: Check) -> dict:
    """Train with the fast settings within the step's time, validate each epoch, score T_3 against I."""
    sets = scoring_sets(c)
    # --photos, else the bundle's photos, else the demo data's training photos (scikit-image's).
    bundled = c.bundle / "photos" if c.bundle is not None else None
    photos = c.args.photos or (str(bundled) if bundled and bundled.is_dir() else str(smoke_data(c) / "trainA1"))
    details: dict[str, Any] = {"vgg_weights": c.args.vgg_weights, "photos": photos, "sets": sorted(sets)}
    data = c.work / "synthetic_train"
    if data.exists():
        shutil.rmtree(data)
    held_out = 4 if c.dry else 16
    status, _ = c.run([c.python, "scripts/make_synthetic_set.py", "--train", "--photos", photos, "--out", str(data),
                       "--n", str(held_out), "--seed", "1", "--size", "64" if c.dry else "256"],
                      c.part(QUALITY_PARTS["make_set"], sum(QUALITY_PARTS.values())))
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
    left, pending = c.left(), QUALITY_PARTS["train"] + QUALITY_PARTS["save"] + QUALITY_PARTS["score"]
    seconds = left * QUALITY_PARTS["train"] / pending
    if c.args.minutes is not None:  # a shorter run leaves the rest to the scoring
        seconds = min(seconds, c.args.minutes * 60)
    require(seconds > 10, "out of time: too little of --budget left for the quality run")
    details["training_limit_s"] = round(seconds)
    status, output = timed_training(c, command, seconds, grace=left * QUALITY_PARTS["save"] / pending)
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
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--bundle", default=None,
                        help="folder made by gpu_check.sh --prepare: install its wheels (offline) and use its data")
    parser.add_argument("--minutes", type=float, default=None,
                        help="at most this many minutes of training in the quality run (default: its share of "
                             "--budget)")
    parser.add_argument("--photos", default=None, help="photo folder for the quality run's synthetic training set")
    parser.add_argument("--benchmarks", default=None,
                        help="folder of extra scoring sets for the quality run (each a folder with testB/, testA1/)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "results" / "gpu_check"))
    parser.add_argument("--steps", default="1,2,3,4,5,6,7",
                        help="comma-separated step numbers to run (step 1, the environment, always runs)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole check, split among the steps (default 480; dry run 600)")
    parser.add_argument("--vgg_weights", default=None,
                        help="VGG19 of the perceptual loss: default the bundle's layers, else imagenet when torch's "
                             "cache holds it, else random")
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = DEFAULT_BUDGET["cpu-dry-run" if args.cpu_dry_run else "cuda"]
    if args.vgg_weights is None:
        bundled = Path(args.bundle) / "vgg19_features.pth" if args.bundle else None
        cache = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
        if bundled is not None and bundled.is_file():
            args.vgg_weights = str(bundled.resolve())
        else:
            args.vgg_weights = "imagenet" if (cache / "vgg19-dcbb9e9d.pth").is_file() else "random"
    # The environment step installs the bundle and reads what the others depend on (GPU, bf16).
    args.steps = {1} | {int(s) for s in args.steps.split(",") if s.strip()}
    unknown = sorted(args.steps - set(STEP_SHARES))
    if unknown:
        parser.error(f"--steps: no step {unknown} (steps are 1-{len(STEP_SHARES)})")
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
