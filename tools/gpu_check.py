"""The GPU check: every CUDA path of IBCLN in one command, within a time budget that leaves room for a rerun.

Started by tools/gpu_check.sh (its header and tools/README.md give the usage). It prints its time plan first,
works in a folder of its own (--work, default <tmp>/ibcln_gpu_check; never under --out) and writes only three
files to --out ($OUT when set, else results/gpu_check/): summary.json (per step: status passed|failed|skipped|
killed, seconds, time limit, details), gpu_check.log (every command and its output) and benchmark.json (step 7).
summary.json is rewritten before and after every step: a step in flight shows as "running", so one killed from
outside is still named. Exit status: 0 all passed, 1 a step failed, 124 the check was stopped (SIGTERM, Ctrl-C
or its own watchdog at --budget plus WATCHDOG_GRACE_S), after the step in flight was recorded as killed.

Time: --budget seconds in all (default: the chosen steps' STEP_SECONDS), split in proportion to STEP_SECONDS
(plan() gives every step's limit; they add up to the budget). A step may use its limit plus its share of what
the steps before it left unused, and each command of a step gets its own part of the step's time, so no
command can take the time of the ones after it. The cold compiles, whose time is the least certain, come last
and inherit what is left; the quality run trains for its own share only. Every step stands alone (step 1
always runs first), so `--steps 3,6` reruns just those. docs/gpu.md, "The time plan", gives the measurements
behind STEP_SECONDS. --cpu-dry-run runs every step on the CPU at tiny sizes (the summary says what ran instead
of the CUDA-only parts; the cold compiles are left out), so that the check itself is tested without a GPU.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from tools.gpu_bundle import (  # noqa: TID251 (a shared module of tools/)
        EXPECTED_INSTALLED,
        REQUIREMENTS,
        BundleError,
        install_bundle,
        prepare_command,
    )
    from util.distributed import weight_difference_in
except ModuleNotFoundError as err:  # run as a file: the repository root is not on sys.path
    sys.exit(f"error: {err}: run it from the repository root as a module: python -m tools.gpu_check")

ROOT = Path(__file__).resolve().parent.parent
# Seconds of each step on one H100-class GPU machine (docs/gpu.md, "The time plan": what each one runs, the
# figure it rests on and its margin).
STEP_SECONDS = {1: 15, 2: 170, 3: 80, 4: 40, 5: 30, 6: 40, 7: 40, 8: 50, 9: 330}
# Step 9, the cold compile of a training step, runs only when asked (--steps 9): its measured lower bound does not
# fit beside the other steps in one machine's time with room for a rerun (docs/gpu.md, "The time plan").
DEFAULT_STEPS = (1, 2, 3, 4, 5, 6, 7, 8)
# The dry run's budget: this many times the GPU seconds of the steps it runs (a CPU of 2 shared cores at tiny
# sizes; the cold compiles are left out).
DRY_RUN_FACTOR = 1.5
DRY_RUN_LEFT_OUT = {8: "a cold compile takes minutes of C++ compilation on a CPU (docs/gpu.md, 'The time plan'); a "
                       "GPU compiles with Triton", 9: "as step 8"}
# The GPU machine the default plan is made for: held for MACHINE_S seconds in all, of which starting it takes up
# to START_UP_S and sending the checkout there and the three result files back up to TRANSFER_S.
MACHINE_S, START_UP_S, TRANSFER_S = 900, 180, 30
WATCHDOG_GRACE_S = 30  # past --budget, the check stops itself (a hang outside any step's commands)
OUT_FILES = ("summary.json", "gpu_check.log", "benchmark.json")  # all that the check writes to --out


def plan(budget: float, steps: list[int]) -> dict[int, float]:
    """Return each chosen step's time limit: the budget split in proportion to STEP_SECONDS, adding up to it."""
    total = sum(STEP_SECONDS[s] for s in steps)
    limits = {s: round(budget * STEP_SECONDS[s] / total, 1) for s in steps}
    last = steps[-1]
    limits[last] = round(budget - sum(v for s, v in limits.items() if s != last), 1)
    return limits


def default_budget(steps: list[int], dry: bool) -> float:
    """Return the default --budget of these steps: their planned seconds (a dry run: x DRY_RUN_FACTOR, compiles out)."""
    if dry:
        return DRY_RUN_FACTOR * sum(STEP_SECONDS[s] for s in steps if s not in DRY_RUN_LEFT_OUT)
    return float(sum(STEP_SECONDS[s] for s in steps))


def machine_account(budget: float, limits: dict[int, float]) -> dict[str, float]:
    """Return the GPU machine's time account of a check of `budget` s: what is left for a rerun after it.

    rerun_room_s: MACHINE_S less the start-up, the transfers and the check; it must hold the largest step.
    """
    room = MACHINE_S - START_UP_S - TRANSFER_S - budget
    return {"machine_s": MACHINE_S, "start_up_s": START_UP_S, "transfers_s": TRANSFER_S, "check_s": budget,
            "rerun_room_s": room, "largest_step_s": max(limits.values()), "fits": room >= max(limits.values())}


def gpu_account(steps: list[int]) -> dict[str, float]:
    """Return machine_account of these steps run on a GPU with their planned seconds."""
    limits = {s: float(STEP_SECONDS[s]) for s in steps}
    return machine_account(sum(limits.values()), limits)


def plan_lines(mode: str, budget: float, limits: dict[int, float], steps: list[int]) -> list[str]:
    """Return the printed time plan: the steps' limits adding up to the budget, and the GPU machine's account."""
    names = dict(enumerate((name for name, _ in STEPS), 1))
    parts = " + ".join(f"{s} {names[s]} {v:g}" for s, v in limits.items())
    lines = [f"time plan ({mode}, seconds): {parts} = {sum(limits.values()):g} = --budget {budget:g}"]
    gpu = gpu_account(steps)
    lines.append(f"on the GPU machine (steps {','.join(map(str, steps))}, planned seconds): start-up <= {START_UP_S} "
                 f"+ check {gpu['check_s']:g} + transfers {TRANSFER_S} = {MACHINE_S - gpu['rerun_room_s']:g} of "
                 f"{MACHINE_S} s; {gpu['rerun_room_s']:g} s left to rerun failed steps (--steps), the largest being "
                 f"{gpu['largest_step_s']:g} s")
    return lines


class CheckStopped(BaseException):
    """The check was told to stop (SIGTERM, Ctrl-C, its watchdog): the step in flight is recorded as killed."""


class Check:
    """The run's settings, its work folder, its log and its summary."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.cpu_dry_run
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "gpu_check.log"
        self.log_path.write_text("")
        self.python = sys.executable
        self.deadline = time.time() + args.budget
        self.step_deadline = self.deadline
        self.step_dir = self.work
        self.gpu = "-1" if self.dry else "0"
        self.bundle = Path(args.bundle).resolve() if args.bundle else None
        self.site: Path | None = None  # where step 1 installs what the bundle adds
        self.left_out = {s: DRY_RUN_LEFT_OUT[s] for s in args.steps if s in DRY_RUN_LEFT_OUT} if self.dry else {}
        self.plan = plan(args.budget, [s for s in args.steps if s not in self.left_out])
        self.share = self.step_start = 0.0  # the current step's planned seconds, and when it started
        self.summary: dict[str, Any] = {
            "mode": "cpu-dry-run" if self.dry else "cuda", "python": self.python,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": args.budget, "plan_s": self.plan,
            "machine_plan": gpu_account(args.steps),
            "work": str(self.work), "steps": []}

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

        Status 124: killed at the time limit. A stop of the check kills the command's whole process group.
        """
        timeout = min(timeout, self.left())
        require(timeout > 5, "out of time: this step's share of --budget is spent")
        self.log("$ " + " ".join(command))
        proc = subprocess.Popen(command, cwd=ROOT, env=self.environment(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            output, _ = proc.communicate()
            status = 124
            output += f"\n[gpu_check: killed after {timeout:.0f} s]"
        except BaseException:
            kill_group(proc)
            raise
        self.log(output.rstrip()[-20000:] + f"\n[exit {status}]")
        return status, output

    def environment(self, extra: dict | None = None) -> dict:
        """Return the subprocesses' environment: the repository (and the bundle's packages) on PYTHONPATH.

        One thread each in a dry run. pytest never loads the machine's installed plugins (xdist, cov, timeout ...
        built for another pytest): the tests need none.
        """
        threads = {"OMP_NUM_THREADS": "1"} if self.dry else {}
        paths = [str(ROOT), *([str(self.site)] if self.site else []), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **threads, **(extra or {})}

    def record(self, number: int, name: str, fn: Callable[[], dict]) -> None:
        """Run one step in a fresh folder within its limit (its plan plus what earlier steps left); write the summary.

        Any exception is the step's failure; a stop of the check records it as killed and goes on stopping.
        """
        start = time.time()
        if number in self.left_out:
            entry = {"step": number, "name": name, "status": "skipped", "seconds": 0.0, "limit_s": 0.0,
                     "details": {"left_out": self.left_out[number]}}
            self.summary["steps"].append(entry)
            self.log(step_line(entry))
            self.write_summary()
            return
        pending = sum(self.plan[s] for s in self.plan if s >= number)
        limit = (self.deadline - start) * self.plan[number] / pending
        self.share, self.step_start = self.plan[number], start
        self.step_deadline = start + limit
        self.step_dir = self.work / f"step{number}"
        shutil.rmtree(self.step_dir, ignore_errors=True)
        self.step_dir.mkdir(parents=True)
        self.summary["running"] = {"step": number, "name": name, "since": start, "limit_s": round(limit, 1)}
        self.write_summary()
        self.log(f"\n===== step {number}: {name} (at most {limit:.0f} s) =====")
        stopped = None
        try:
            details = fn()
            status = details.pop("status", "passed")
        except StepFailed as err:
            status, details = "failed", {"error": str(err), **err.details}
        except (CheckStopped, KeyboardInterrupt) as err:
            stopped = err
            status, details = "killed", {"error": f"the check was stopped ({err or 'Ctrl-C'}) during this step"}
        except Exception as err:  # a bug in the check itself must not hide the other steps
            status, details = "failed", {"error": f"{type(err).__name__}: {err}"}
        entry = {"step": number, "name": name, "status": status, "seconds": round(time.time() - start, 1),
                 "limit_s": round(limit, 1), "details": details}
        self.summary["steps"].append(entry)
        self.summary.pop("running")
        self.log(step_line(entry))
        self.write_summary()
        if stopped is not None:
            raise stopped

    def write_summary(self) -> None:
        """Write summary.json with the overall verdict (whole or not at all: a reader never sees half a file)."""
        self.summary["passed"] = passed(self.summary)
        partial = self.out / "summary.json.partial"
        partial.write_text(json.dumps(self.summary, indent=2))
        os.replace(partial, self.out / "summary.json")


def passed(summary: dict) -> bool:
    """Return whether no step of the summary failed, was killed or is still shown running."""
    return "running" not in summary and all(s["status"] in ("passed", "skipped") for s in summary["steps"])


def step_line(entry: dict) -> str:
    """Return the one summary line of a finished step."""
    details = json.dumps(entry["details"])[:2000]
    return f"----- step {entry['step']} {entry['status']} in {entry['seconds']} s: {details}"


def final_lines(summary: dict, out: Path, args: argparse.Namespace) -> list[str]:
    """Return the check's last lines: where the summary is, and the command that reruns the steps that did not pass."""
    redo = [s["step"] for s in summary["steps"] if s["status"] in ("failed", "killed")]
    if "running" in summary:
        redo.append(summary["running"]["step"])
    lines = [f"summary: {out / 'summary.json'}; " + (f"FAILED steps {redo}" if redo else "all passed")]
    if redo:
        same = " --cpu-dry-run" if args.cpu_dry_run else ""
        same += "".join(f" --{k} {getattr(args, k)}" for k in ("bundle", "photos", "benchmarks", "minutes")
                        if getattr(args, k) is not None)
        lines.append(f"rerun them: bash tools/gpu_check.sh{same} --steps {','.join(map(str, redo))} "
                     f"(default budget {default_budget(sorted({1, *redo}), args.cpu_dry_run):g} s)")
    return lines


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a command started in its own session, with everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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

NEEDED_MODULES = (*EXPECTED_INSTALLED, *(r.split(">=")[0] for r in REQUIREMENTS))
ENV_PROBE = """
import json, importlib.util, sys, torch
from util.machine import cpu_has_native_bf16, cuda_has_native_bf16
info = {"python": ".".join(map(str, sys.version_info[:3])), "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device_count": torch.cuda.device_count(),
        "modules": {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    # bf16 counts only where it is native (torch's default answer includes emulated bf16, as on a T4 or V100).
    info.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16=cuda_has_native_bf16(), tf32_exists=p.major >= 8)
else:
    info.update(cpu_bf16=cpu_has_native_bf16())
print("ENV " + json.dumps(info))
"""


def step_environment(c: Check) -> dict:
    details: dict[str, Any] = {}
    if c.bundle is not None:
        site = c.step_dir / "site"
        try:
            details["bundle"] = install_bundle(c.bundle, site, c.python, timeout=max(c.left() - 15, 5))
        except BundleError as err:
            raise StepFailed(str(err)) from None
        c.site = site
    status, output = c.run([c.python, "-c", ENV_PROBE, *NEEDED_MODULES], c.left())
    line = next((x for x in output.splitlines() if x.startswith("ENV ")), None)
    require(status == 0 and line is not None, "could not read the environment")
    info = json.loads(line[4:])
    c.summary["environment"] = info
    details.update(info)
    missing = [m for m, found in info["modules"].items() if not found]
    require(not missing, f"missing Python modules {missing}: give --bundle DIR, made with --prepare (see "
                         "tools/README.md)", **details)
    if not c.dry:
        require(info["cuda_available"], "torch sees no CUDA device", **details)
    return details


# ----- step 2 (and 8): tests/test_cuda.py ----------------------------------------------------------------------------

def pytest_step(c: Check, selection: str, what: str, timeout: float | None = None) -> dict:
    """Run tests/test_cuda.py's tests chosen by `-k selection` (marker cuda on a GPU); return the details.

    A failure is a StepFailed with the details.
    """
    marker = [] if c.dry else ["-m", "cuda"]  # a dry run shows the tests skipping themselves, with the reason
    command = [c.python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp",
               str(c.step_dir / "pytest"), *marker, "-k", selection, "tests/test_cuda.py"]
    status, output = c.run(command, timeout or c.left(), env={"IBCLN_TEST_THREADS": "1" if c.dry else "4"})
    tail = [x for x in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected|errors?)\b.* in ", x)]
    details = {"ran": f"tests/test_cuda.py -k '{selection}': {what}" + (
        " (they skip themselves without CUDA; the CPU checks are the regular test suite's)" if c.dry else ""),
               "pytest": tail[-1].strip("= ") if tail else "no pytest summary line (see the log)"}
    require(status == 0, "tests failed (or pytest is missing: see tools/README.md)", **details)
    return details


def step_tests(c: Check) -> dict:
    return pytest_step(c, "not compile", "every CUDA test but the compiled one (step 8)")


# ----- step 3: training smoke runs -------------------------------------------------------------------------------

def smoke_data(c: Check) -> Path:
    """Return the demo dataset: the bundle's, else made once in the work folder by scripts/make_demo_data.py."""
    if c.bundle is not None and (c.bundle / "demo_data" / "manifest.json").is_file():
        return c.bundle / "demo_data"
    root = c.work / "demo_data"
    if not (root / "manifest.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        status, _ = c.run([c.python, "scripts/make_demo_data.py", str(root), "--seed", "0"], c.left())
        require(status == 0, "scripts/make_demo_data.py failed")
    return root


def train_command(c: Check, name: str, *flags: str, tiny: bool = False) -> list[str]:
    """Return the train.py command of a smoke run in the step's folder: a few iterations at 256², or tiny sizes.

    Tiny: in a dry run, or when asked (a run on the CPU of a GPU machine).
    """
    size = ["--load_size", "40", "--crop_size", "32", "--dataset_size", "4", "--num_threads", "0"] if c.dry or tiny \
        else ["--load_size", "286", "--crop_size", "256", "--dataset_size", "8", "--num_threads", "2"]
    return [c.python, "train.py", "--dataroot", str(smoke_data(c)), "--name", name, "--model", "IBCLN",
            "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.step_dir / "checkpoints"), "--display_id", "-1",
            "--no_html", "--vgg_weights", c.args.vgg_weights, "--batch_size", "2", "--niter", "1",
            "--print_freq", "2", "--seed", "1", *size, *flags]


def trained(c: Check, name: str, status: int) -> str:
    """Return 'passed' when a smoke run exited 0 and saved its final checkpoint, else why not."""
    ok = status == 0 and (c.step_dir / "checkpoints" / name / "final_net_G_T.pth").is_file()
    return "passed" if ok else f"failed (exit {status})"


def training_variants(c: Check) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Return (name -> extra flags) of the smoke runs this mode can do, and the ones left out with the reason."""
    variants = {"fp32": [], "amp_bf16": ["--amp", "bf16"], "amp_fp16": ["--amp", "fp16"],
                "channels_last": ["--channels_last"]}
    left_out: dict[str, str] = {}
    if c.dry:
        left_out["amp_fp16"] = "float16 autocast is CUDA-only (the CPU equivalent is --amp bf16)"
        left_out["amp_bf16"] = ("slow first steps of oneDNN bf16 on a small CPU "
                                "(tests/models/test_speed_options.py covers it)")
        left_out["channels_last"] = ("time: step 5 runs test.py --channels_last "
                                     "(tests/models/test_speed_options.py trains it)")
    elif not c.summary.get("environment", {}).get("bf16", True):
        left_out["amp_bf16"] = "this GPU has no native bfloat16 (--amp bf16 is refused there; --amp picks fp16)"
    return {k: v for k, v in variants.items() if k not in left_out}, left_out


def step_training(c: Check) -> dict:
    variants, left_out = training_variants(c)
    pending = len(variants) + 1
    results: dict[str, str] = {}
    for name, flags in variants.items():
        status, _ = c.run(train_command(c, f"smoke_{name}", *flags), c.part(1, pending))
        pending -= 1
        results[name] = trained(c, f"smoke_{name}", status)
    status, output = c.run(train_command(c, "smoke_fp32", "--continue_train", "--niter", "2"), c.left())
    resumed = status == 0 and "resuming after epoch 1" in output
    results["continue_train"] = "passed" if resumed else f"failed (exit {status})"
    details = {"runs": results, "left_out": left_out, "device": "cuda:0" if not c.dry else "cpu",
               "tf32": "n/a (CPU)" if c.dry else "on (--tf32 auto)"}
    require(all(v == "passed" for v in results.values()), "a training run failed", **details)
    return details


# ----- step 4: torchrun ------------------------------------------------------------------------------------------

def step_torchrun(c: Check) -> dict:
    """torchrun with nccl on the GPUs (2 processes with 2 GPUs, else 1), and 2 gloo processes on the CPU (tiny).

    Every run of 2 processes must end with rank 0's weights on every rank (a difference of exactly 0).
    """
    gpus = c.summary.get("environment", {}).get("device_count", 0)
    runs = [("gloo", "-1", 2)] if c.dry else [("nccl", "0", 2 if gpus >= 2 else 1), ("gloo", "-1", 2)]
    results = {}
    for k, (backend, gpu_ids, n) in enumerate(runs):
        name = f"ddp_{backend}{n}"
        command = [c.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                   *train_command(c, name, tiny=backend == "gloo")[1:]]
        command[command.index("--gpu_ids") + 1] = gpu_ids
        status, output = c.run(command, c.part(1, len(runs) - k))
        difference = weight_difference_in(output)
        synced = n == 1 or difference == 0.0
        results[f"{backend}, {n} process(es)"] = {
            "status": "passed" if status == 0 and synced else f"failed (exit {status})",
            "weight_difference_from_rank_0": difference}
    details = {"runs": results,
               "note": "with one process torchrun sets WORLD_SIZE=1, which train.py runs as a plain single process: "
                       "nccl DDP itself needs 2 GPUs"}
    require(all(r["status"] == "passed" for r in results.values()), "a torchrun run failed or its ranks' weights "
            "differ", **details)
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

# Seeded generator weights for step 6 (what is measured is memory and time, not quality): it needs no other step.
MAKE_WEIGHTS = """
import sys, torch
from models.networks import ConvLSTMGenerator
torch.manual_seed(1)
for name in ("G_T", "G_R"):
    torch.save(ConvLSTMGenerator().state_dict(), f"{sys.argv[1]}/final_net_{name}.pth")
"""


def step_large_test(c: Check) -> dict:
    import numpy as np
    from PIL import Image

    size, tile, overlap = (96, 64, 16) if c.dry else (2048, 1024, 128)
    weights = c.step_dir / "checkpoints" / "large"
    weights.mkdir(parents=True)
    status, _ = c.run([c.python, "-c", MAKE_WEIGHTS, str(weights)], c.part(1, 5))
    require(status == 0, "could not write the generator weights")
    root = c.step_dir / "large"
    photo = Image.open(next((smoke_data(c) / "testB").glob("*.png"))).convert("RGB").resize((size, size))
    for folder in ("testB", "testA1"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        photo.save(root / folder / "large.png")
    results = {}
    for k, (label, flags) in enumerate((("whole", []), ("tiled", ["--tile", str(tile), "--tile_overlap",
                                                                   str(overlap)]))):
        args = ["--dataroot", str(root), "--name", "large", "--model", "IBCLN", "--epoch", "final",
                "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.step_dir / "checkpoints"),
                "--results_dir", str(c.step_dir / f"large_{label}"), "--keep_size", "--channels_last", *flags]
        status, output = c.run([c.python, "-c", MEASURE_TEST, *args], c.part(1, 2 - k))
        line = next((x for x in output.splitlines() if x.startswith("PEAK ")), None)
        results[label] = {"status": "passed" if status == 0 else f"failed (exit {status})",
                          **(json.loads(line[5:]) if line else {})}
    details = {"image": f"{size}x{size}", "tile": tile, "tile_overlap": overlap, **results,
               "tf32": "n/a (CPU)" if c.dry else "on (--tf32 auto)"}
    require(all(r["status"] == "passed" for r in results.values()), "test.py failed", **details)
    arrays = [np.asarray(Image.open(c.step_dir / f"large_{k}" / "large" / "test_final" / "images" /
                                    "large_fake_Ts_03.png"), dtype=np.int16) for k in ("whole", "tiled")]
    details["tiled_vs_whole_max_grey_levels"] = int(np.abs(arrays[0] - arrays[1]).max())
    return details


# ----- step 6: the benchmark -------------------------------------------------------------------------------------

# The compiled variants (compile, and fast, which compiles on CUDA) compile for every size: more than the step's
# share of the budget; steps 8 and 9 compile.
BENCHMARK_VARIANTS = "plain,channels_last,amp,fast_fp32"


def step_benchmark(c: Check) -> dict:
    path = c.out / "benchmark.json"
    if c.dry:
        command = [c.python, "-m", "tools.benchmark", "--device", "cpu", "--variants", "plain,fast_fp32", "--sizes",
                   "32", "--train_size", "32", "--repeats", "1", "--warmup", "1", "--threads", "1", "--skip_data",
                   "--json", str(path)]
    else:
        command = [c.python, "-m", "tools.benchmark", "--device", "cuda", "--variants", BENCHMARK_VARIANTS,
                   "--sizes", "256,1024", "--repeats", "2", "--warmup", "1", "--skip_data", "--json", str(path)]
    status, _ = c.run(command, c.left())
    require(status == 0 and path.is_file(), f"tools/benchmark.py failed (exit {status})")
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
    return {"json": str(path), "device": report["device"], "tf32": report["device"].get("cudnn_allow_tf32"),
            "matmul_tflops": peaks, "variants": rows, "speedup_vs_plain": report.get("speedup_vs_plain"),
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
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            output, _ = proc.communicate()
    except BaseException:
        kill_group(proc)
        raise
    c.log(output.rstrip()[-20000:] + f"\n[exit {proc.returncode}]")
    return proc.returncode, output


def score_with_evaluate(c: Check, name: str, sets: dict[str, Path]) -> dict:
    """Return {set: {images, PSNR_I, SSIM_I, PSNR_T_3, SSIM_T_3}} from evaluate.py's JSON on the sets."""
    path = c.step_dir / "evaluate.json"
    limit = ["--num_test", "2", "--max_size", "64"] if c.dry else []
    status, _ = c.run([c.python, "evaluate.py", "--name", name, "--epoch", "latest", "--checkpoints_dir",
                       str(c.step_dir / "checkpoints"), "--results_dir", str(c.step_dir / "results"), "--gpu_ids",
                       c.gpu, "--json", str(path), *limit, "--sets", *[f"{k}={v}" for k, v in sets.items()]],
                      c.left())
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
    data = c.step_dir / "synthetic_train"
    held_out = 4 if c.dry else 16
    status, _ = c.run([c.python, "scripts/make_synthetic_set.py", "--train", "--photos", photos, "--out", str(data),
                       "--n", str(held_out), "--seed", "1", "--size", "64" if c.dry else "256"],
                      c.part(QUALITY_PARTS["make_set"], sum(QUALITY_PARTS.values())))
    require(status == 0, "scripts/make_synthetic_set.py failed")
    fast = [] if c.dry else ["--channels_last", "--amp"]
    size = ["--load_size", "40", "--crop_size", "32", "--dataset_size", "8", "--num_threads", "0"] if c.dry else \
        ["--load_size", "286", "--crop_size", "256", "--dataset_size", "400", "--num_threads", "6"]
    command = [c.python, "train.py", "--dataroot", str(data), "--name", "quality", "--model", "IBCLN",
               "--gpu_ids", c.gpu, "--checkpoints_dir", str(c.step_dir / "checkpoints"), "--display_id", "-1",
               "--no_html", "--vgg_weights", c.args.vgg_weights, "--batch_size", "2",
               # The dry run trains one tiny epoch (and validates it); on a GPU the time limit stops training.
               "--niter", "1" if c.dry else "1000",
               "--print_freq", "200", "--save_epoch_freq", "0", "--seed", "1",
               "--val_dataroot", str(data / "val"), "--val_max", str(held_out), *size, *fast]
    # Its own planned share at most: what earlier steps left goes on to the cold compiles after it.
    left = min(c.left(), c.share - (time.time() - c.step_start))
    pending = QUALITY_PARTS["train"] + QUALITY_PARTS["save"] + QUALITY_PARTS["score"]
    seconds = left * QUALITY_PARTS["train"] / pending
    if c.args.minutes is not None:  # a shorter run leaves the rest to the scoring
        seconds = min(seconds, c.args.minutes * 60)
    require(seconds > 10, "out of time: too little of --budget left for the quality run")
    details["training_limit_s"] = round(seconds)
    status, output = timed_training(c, command, seconds, grace=left * QUALITY_PARTS["save"] / pending)
    epochs = [x for x in output.splitlines() if x.startswith("end of epoch")]
    details.update(train_exit=status, epochs_done=len(epochs), fast_flags=fast,
                   tf32="n/a (CPU)" if c.dry else "on (--tf32 auto)")
    require((c.step_dir / "checkpoints" / "quality" / "latest_net_G_T.pth").is_file(), "no 'latest' checkpoint saved",
            **details)
    val_log = c.step_dir / "checkpoints" / "quality" / "val_log.csv"
    if val_log.is_file():
        with open(val_log, newline="") as f:
            details["validation"] = list(csv.DictReader(f))[-3:]
    scores = score_with_evaluate(c, "quality", sets)
    for entry in scores.values():
        entry["T_3_minus_I_PSNR"] = round(entry["PSNR_T_3"] - entry["PSNR_I"], 3)
    details["scores"] = scores
    return details


# ----- steps 8 and 9: torch.compile, cold ------------------------------------------------------------------------

def step_compiled_test(c: Check) -> dict:
    """tests/test_cuda.py's compiled test cascade against the CPU: a cold compile of G_T and G_R's inference."""
    return pytest_step(c, "compile", "the compiled test cascade against the CPU, compiled from an empty cache")


def step_compiled_training(c: Check) -> dict:
    """A train.py run with --compile: a cold compile of G, D and VGG, forward and backward."""
    status, _ = c.run(train_command(c, "smoke_compile", "--compile"), c.left())
    details = {"run": trained(c, "smoke_compile", status), "tf32": "on (--tf32 auto)"}
    require(details["run"] == "passed", "train.py --compile failed (exit 124: not compiled within the step's time; "
            "rerun with --steps 9)", **details)
    return details


STEPS = [("environment", step_environment), ("CUDA tests", step_tests), ("training smoke", step_training),
         ("torchrun", step_torchrun), ("test.py large image", step_large_test), ("benchmark", step_benchmark),
         ("timed quality run", step_quality), ("compiled test", step_compiled_test),
         ("compiled training", step_compiled_training)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--bundle", default=None,
                        help="folder made by gpu_check.sh --prepare: install what this Python lacks from it (offline) "
                             "and use its data")
    parser.add_argument("--minutes", type=float, default=None,
                        help="at most this many minutes of training in the quality run (default: its share of "
                             "--budget)")
    parser.add_argument("--photos", default=None, help="photo folder for the quality run's synthetic training set")
    parser.add_argument("--benchmarks", default=None,
                        help="folder of extra scoring sets for the quality run (each a folder with testB/, testA1/)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "results" / "gpu_check"),
                        help="where summary.json, gpu_check.log and benchmark.json go (only these)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ibcln_gpu_check"),
                        help="the check's work folder (checkpoints, data, installed packages); not under --out")
    parser.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)),
                        help="comma-separated step numbers to run (step 1, the environment, always runs; step 9, the "
                             "cold compile of training, only when named)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole check, split among the steps (default: the chosen steps' planned "
                             f"seconds; x{DRY_RUN_FACTOR:g} for a dry run, without steps 8 and 9)")
    parser.add_argument("--vgg_weights", default=None,
                        help="VGG19 of the perceptual loss: default the bundle's layers, else imagenet when torch's "
                             "cache holds it, else random")
    parser.add_argument("--record-killed", type=int, default=None, metavar="STATUS",
                        help="(gpu_check.sh's) the check exited with STATUS: record a step left running as killed")
    args = parser.parse_args(argv)
    # The environment step installs the bundle and reads what the others depend on (GPU, bf16).
    try:
        args.steps = sorted({1} | {int(s) for s in args.steps.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--steps {args.steps}: expected comma-separated step numbers")
    unknown = sorted(set(args.steps) - set(STEP_SECONDS))
    if unknown:
        parser.error(f"--steps: no step {unknown} (steps are 1-{len(STEP_SECONDS)})")
    if args.budget is None:
        args.budget = default_budget(args.steps, args.cpu_dry_run)
    out, work = Path(args.out).resolve(), Path(args.work).resolve()
    if work == out or out in work.parents:
        parser.error(f"--work {args.work} is inside --out {args.out}: --out receives only {', '.join(OUT_FILES)}")
    if args.vgg_weights is None:
        bundled = Path(args.bundle) / "vgg19_features.pth" if args.bundle else None
        cache = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
        if bundled is not None and bundled.is_file():
            args.vgg_weights = str(bundled.resolve())
        else:
            args.vgg_weights = "imagenet" if (cache / "vgg19-dcbb9e9d.pth").is_file() else "random"
    return args


def record_killed(args: argparse.Namespace) -> int:
    """Record in summary.json a step left running by a check that was killed (exit 124/137); print the last lines."""
    path = Path(args.out) / "summary.json"
    if not path.is_file():
        print(f"gpu_check: killed (exit {args.record_killed}) before it wrote {path}", flush=True)
        return args.record_killed
    summary = json.loads(path.read_text())
    running = summary.pop("running", None)
    if running is not None:
        entry = {"step": running["step"], "name": running["name"], "status": "killed",
                 "seconds": round(time.time() - running["since"], 1),
                 "limit_s": running["limit_s"], "details": {"error": f"the check was killed (exit "
                                                                     f"{args.record_killed}) during this step"}}
        summary["steps"].append(entry)
        summary["passed"] = False
        path.write_text(json.dumps(summary, indent=2))
        print(step_line(entry), flush=True)
    for line in final_lines(summary, Path(args.out).resolve(), args):
        print(line, flush=True)
    return args.record_killed


def stop_on_signals(budget: float) -> None:
    """Turn SIGTERM, and the watchdog's SIGALRM at budget + WATCHDOG_GRACE_S, into CheckStopped."""
    def stop(signum: int, frame: Any) -> None:
        raise CheckStopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(budget + WATCHDOG_GRACE_S))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen steps; return the exit status (1 if any failed, 124 if the check was stopped)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare"]:
        return prepare_command(argv[1:])
    args = parse_args(argv)
    if args.record_killed is not None:
        return record_killed(args)
    check = Check(args)
    for line in plan_lines(check.summary["mode"], args.budget, check.plan, args.steps):
        check.log(line)
    check.summary["settings"] = {k: v for k, v in vars(args).items() if k != "record_killed"}
    stop_on_signals(args.budget)
    status = 0
    try:
        for number, (name, fn) in enumerate(STEPS, 1):
            if number in args.steps:
                check.record(number, name, lambda fn=fn: fn(check))
    except (CheckStopped, KeyboardInterrupt):
        status = 124
    finally:
        signal.alarm(0)
    check.summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    check.write_summary()
    for line in final_lines(check.summary, check.out, args):
        check.log(line)
    return status or (0 if check.summary["passed"] else 1)


if __name__ == "__main__":
    sys.exit(main())
