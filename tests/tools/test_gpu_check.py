"""tools/gpu_check.sh: its time plan, the offline bundle (--prepare, --bundle), stopped steps, the CPU dry run; loss
reads per step.

Nothing here needs the network except the test marked `network` (a real download from PyPI for another Python),
which skips itself when PyPI cannot be reached. The offline tests build the bundle from wheels re-packed from
this environment's installed dominate and pytest (and their dependencies), or from small made-up wheels.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, brightened_batch, build_tiny_dataset

from models.base_model import NonFiniteLossError
from options.model_config import create_model
from tools import benchmark, gpu_bundle, gpu_check  # noqa: TID251 (their own tests)

THIS_PYTHON = ".".join(map(str, sys.version_info[:2]))


def _gpu_check(out: Path, *args: str, timeout: float = 900, python: str = sys.executable,
               work: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "OUT": str(out)}
    work_args = ["--work", str(work)] if work is not None and args[:1] != ("--prepare",) else []
    return subprocess.run(["bash", str(REPO_ROOT / "tools" / "gpu_check.sh"), *args, *work_args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


# ----- the time plan ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [420.0, 600.0, 97.3])
@pytest.mark.parametrize("steps", [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 6], [1, 3, 9]])
def test_the_step_limits_add_up_to_the_budget(budget, steps):
    limits = gpu_check.plan(budget, steps)
    assert sorted(limits) == steps and all(v > 0 for v in limits.values())
    assert sum(limits.values()) == pytest.approx(budget, abs=1e-6)
    full = float(sum(gpu_check.STEP_SECONDS.values()))
    assert gpu_check.plan(full, list(gpu_check.STEP_SECONDS)) == {s: float(v) for s, v in
                                                                  gpu_check.STEP_SECONDS.items()}


@pytest.mark.parametrize("steps", [list(gpu_check.DEFAULT_STEPS), [1, 9]], ids=["default", "compiled_training"])
def test_the_plan_leaves_room_to_rerun_its_largest_step_on_the_same_machine(steps):
    account = gpu_check.gpu_account(steps)
    assert account["start_up_s"] >= 180 and account["machine_s"] <= 900  # 15 minutes, of which up to 3 start-up
    spent = account["start_up_s"] + account["transfers_s"] + account["check_s"] + account["rerun_room_s"]
    assert spent == account["machine_s"] and account["check_s"] == sum(gpu_check.STEP_SECONDS[s] for s in steps)
    largest = max(steps, key=gpu_check.STEP_SECONDS.get)
    assert account["fits"] and account["rerun_room_s"] >= gpu_check.STEP_SECONDS[largest]
    # A rerun's default budget is the planned seconds of the steps it reruns (and step 1): the largest one fits.
    assert gpu_check.parse_args(["--steps", str(largest)]).budget <= account["rerun_room_s"]
    assert gpu_check.parse_args([]).steps == list(gpu_check.DEFAULT_STEPS)  # step 9 only when asked


def test_the_work_folder_is_never_inside_the_output_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--out", str(tmp_path), "--work", str(tmp_path / "work")])
    assert "--out receives only summary.json, gpu_check.log, benchmark.json" in capsys.readouterr().err


@pytest.mark.slow  # runs the check
def test_a_command_never_outlives_its_step(tmp_path):
    args = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    check = gpu_check.Check(gpu_check.parse_args(["--cpu-dry-run", *args, "--budget", "8"]))
    start = time.time()
    # Step 1's share of 8 s is under the 5 s a command needs at least: refused at once, not run for 600 s.
    check.record(1, "sleep", lambda: {"exit": check.run(["sleep", "60"], 600)[0]})
    assert time.time() - start < 5
    assert check.summary["steps"][0]["status"] == "failed" and "out of time" in check.summary["steps"][0]["details"][
        "error"]
    check = gpu_check.Check(gpu_check.parse_args([*args, "--budget", "20", "--steps", "1,6"]))
    start = time.time()
    check.record(1, "sleep", lambda: {"exit": check.run(["sleep", "60"], 600)[0]})
    assert check.summary["steps"][0]["details"]["exit"] == 124  # killed at step 1's limit
    assert time.time() - start == pytest.approx(check.plan[1], abs=3)


def _children_of(work: Path, check: int) -> list[int]:
    """Return the ids of running processes, the check's own aside, whose command line names the work folder."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(entry.name) != check and str(work) in (entry / "cmdline").read_bytes(
                    ).decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_stopped_check_records_the_step_in_flight_as_killed_and_says_how_to_rerun_it(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tools.gpu_check", "--cpu-dry-run", "--steps", "7", "--out",
                             str(out), "--work", str(work)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # until step 7 runs a command in the work folder
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        if summary.get("running", {}).get("step") == 7 and _children_of(work, proc.pid):
            break
        time.sleep(0.5)
    else:
        pytest.fail("step 7 never started")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 124, output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert "running" not in summary and summary["passed"] is False
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(1, "passed"), (7, "killed")]
    assert "SIGTERM" in summary["steps"][1]["details"]["error"]
    assert "----- step 7 killed" in output
    assert output.rstrip().splitlines()[-1].startswith("rerun them: bash tools/gpu_check.sh --cpu-dry-run --steps 7")
    time.sleep(1)
    assert not _children_of(work, proc.pid)  # the step's command and what it started were killed with the check


@pytest.mark.slow  # runs gpu_check.sh
def test_the_wrapper_records_a_step_left_running_by_a_killed_check(tmp_path):
    # A check killed outright (SIGKILL: exit 137) cannot record anything: the wrapper does, from summary.json.
    out = tmp_path / "out"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
for a in "$@"; do [ "$a" = --record-killed ] && exec {sys.executable} "$@"; done
mkdir -p "$OUT"
echo '{{"started": "x", "steps": [{{"step": 1, "name": "environment", "status": "passed", "seconds": 1,
  "limit_s": 20, "details": {{}}}}],
  "running": {{"step": 9, "name": "compiled training", "since": '$(date +%s)', "limit_s": 150}}}}' > "$OUT/summary.json"
kill -9 $$
""")
    fake.chmod(0o755)
    proc = _gpu_check(out, "--steps", "9", python=str(fake), timeout=120)
    assert proc.returncode == 137, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "running" not in summary and summary["passed"] is False
    assert summary["steps"][-1]["step"] == 9 and summary["steps"][-1]["status"] == "killed"
    assert "killed (exit 137)" in summary["steps"][-1]["details"]["error"]
    assert "----- step 9 killed" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("rerun them: bash tools/gpu_check.sh --steps 9")


# ----- the bundle ------------------------------------------------------------------------------------------------

def _requirement_closure(names: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """Return the installed distributions of names and of everything they require on this interpreter."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in found:
            continue
        found[name] = dist = importlib.metadata.distribution(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _repack(dist: importlib.metadata.Distribution, folder: Path) -> Path:
    """Write an installed pure-Python distribution back into a wheel in folder; return the wheel's path."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    info = next(f.parent.as_posix() for f in dist.files or [] if f.name == "METADATA")  # as installed
    wheel = folder / f"{name}-{dist.version}-py3-none-any.whl"
    records = []
    for file in dist.files or []:
        path = file.as_posix()
        if path.startswith("..") or "__pycache__" in path or path.split("/")[-1] in (
                "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            continue
        records.append((path, Path(dist.locate_file(file)).read_bytes()))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, content in records:
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(content)])
    writer.writerow([f"{info}/RECORD", "", ""])
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in records:
            archive.writestr(path, content)
        archive.writestr(f"{info}/RECORD", out.getvalue())
    return wheel


@pytest.fixture(scope="module")
def local_wheels(tmp_path_factory) -> Path:
    """Return a folder of wheels of dominate, pytest and their dependencies, made from this environment."""
    folder = tmp_path_factory.mktemp("wheels")
    for dist in _requirement_closure(["dominate", "pytest"]).values():
        _repack(dist, folder)
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, local_wheels) -> Path:
    """Return a bundle made offline by gpu_check.sh --prepare for this Python, with VGG19 layers."""
    from torchvision.models import vgg19

    tmp = tmp_path_factory.mktemp("prepare")
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in vgg19().features.state_dict().items()}, tmp / "vgg19.pth")
    folder = tmp / "gpu_bundle"
    proc = _gpu_check(tmp / "unused", "--prepare", str(folder), "--target-python", THIS_PYTHON, "--find-links",
                      str(local_wheels), "--vgg_weights", str(tmp / "vgg19.pth"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


@pytest.mark.slow  # the bundle: gpu_check.sh --prepare
def test_prepare_gathers_the_wheels_and_data_of_the_gpu_run(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target_python"] == THIS_PYTHON and manifest["requirements"] == list(gpu_bundle.REQUIREMENTS)
    names = {re.match(r"([A-Za-z0-9_]+)-", w).group(1).lower() for w in manifest["wheels"]}
    assert {"dominate", "pytest", "pluggy", "iniconfig", "packaging", "pygments"} <= names
    assert set(manifest["closure"]["pytest>=8"]) >= {"pytest", "pluggy", "iniconfig", "packaging"}
    assert manifest["closure"]["dominate>=2.8"] == ["dominate"]
    assert (bundle / "demo_data" / "manifest.json").is_file() and manifest["vgg19_features"]
    assert manifest["bytes"] < 30 * 2**20  # tens of MB at most (here: no photos or benchmarks)
    assert sum(f["bytes"] for f in manifest["files"] if f["path"] != "manifest.json") == manifest["bytes"]
    from models.networks import load_vgg_features

    assert len(load_vgg_features(str(bundle / "vgg19_features.pth")).layers) == 7  # what --vgg_weights PATH reads


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """Return the python of a fresh venv (with pip) that has neither dominate nor pytest."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    return str(venv / "bin" / "python")


def _imports_from(python: str, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([python, "-c", "import dominate, dominate.tags, pytest, pluggy; print(pytest.__file__)"],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.slow
def test_a_fresh_environment_installs_what_it_lacks_from_the_bundle_alone(bundle, bare_python, tmp_path):
    done = gpu_bundle.install_bundle(bundle, tmp_path / "site", bare_python)
    assert done["method"] == "pip install --no-index --find-links"
    assert done["installed"] == list(gpu_bundle.REQUIREMENTS) and done["already_there"] == {}
    probe = _imports_from(bare_python, tmp_path / "site")
    assert probe.returncode == 0 and probe.stdout.startswith(str(tmp_path / "site")), probe.stderr


@pytest.mark.slow
def test_what_the_python_already_has_is_not_installed_again(bundle, tmp_path):
    # This environment has dominate and pytest: the bundle adds nothing, and its pytest keeps its own plugins.
    done = gpu_bundle.install_bundle(bundle, tmp_path / "site", sys.executable)
    assert done["method"] == "nothing to install" and done["installed"] == []
    assert done["already_there"]["pytest"] == importlib.metadata.version("pytest")
    assert not any((tmp_path / "site").iterdir())
    missing, versions = gpu_bundle.missing_requirements(sys.executable, ["pytest>=999", "dominate>=2.8"])
    assert missing == ["pytest>=999"] and versions["dominate"] == importlib.metadata.version("dominate")


@pytest.mark.slow
def test_the_bundle_installs_without_pip_and_refuses_another_python(bundle, bare_python, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_bundle, "pip_works", lambda python: False)
    done = gpu_bundle.install_bundle(bundle, tmp_path / "site", bare_python)
    assert done["method"].startswith("unpacked")
    probe = _imports_from(bare_python, tmp_path / "site")
    assert probe.returncode == 0 and probe.stdout.startswith(str(tmp_path / "site")), probe.stderr
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "target_python": "3.99"}))
    with pytest.raises(gpu_bundle.BundleError, match=rf"prepared for Python 3.99, this is {THIS_PYTHON}: .*"
                                                     rf"--target-python {THIS_PYTHON}"):
        gpu_bundle.install_bundle(other, tmp_path / "site2")


def test_the_download_asks_pip_for_wheels_of_the_target_python_and_platform(tmp_path):
    command = gpu_bundle.download_command(tmp_path, "3.12", ["manylinux2014_x86_64"], [])
    text = " ".join(command)
    for part in ("pip download", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 "--abi cp312", "--platform manylinux2014_x86_64", f"--dest {tmp_path}"):
        assert part in text, part
    assert "--no-deps" not in command and "--no-index" not in command  # dependencies resolved, from the index
    assert command[-2:] == list(gpu_bundle.REQUIREMENTS)
    offline = gpu_bundle.download_command(tmp_path, "3.12", ["manylinux2014_x86_64"], ["/w"], ["x"], no_deps=True)
    assert "--no-index" in offline and offline[offline.index("--find-links") + 1] == "/w"
    assert "--no-deps" in offline and offline[-1] == "x"


def _wheel(folder: Path, name: str, requires: list[str]) -> None:
    """Write a pure-Python wheel `name` 1.0 with the given Requires-Dist lines into folder."""
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(f"Requires-Dist: {r}\n"
                                                                               for r in requires)
    files = {f"{name}/__init__.py": "", f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


@pytest.mark.slow  # pip
@pytest.mark.parametrize(("target", "expected"), [("3.10", {"alpha", "old", "common"}),
                                                  ("3.12", {"alpha", "new", "newdep", "common"})])
def test_the_wheels_follow_the_markers_of_the_target_python_not_this_one(tmp_path, target, expected):
    # pip evaluates markers for the Python it runs under (3.11 here): alone, it would fetch neither "old"
    # (< 3.11) nor "new" (>= 3.12) for the target.
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "alpha", ['old; python_version < "3.11"', 'new>=1; python_version >= "3.12"',
                            'winonly; sys_platform == "win32"', "common"])
    for name, requires in (("old", []), ("new", ["newdep"]), ("newdep", []), ("winonly", []), ("common", [])):
        _wheel(index, name, requires)
    dest = tmp_path / "wheels"
    closure = gpu_bundle.download_for_target(dest, ["alpha"], target, ["manylinux2014_x86_64"], [str(index)])
    assert {w.name.split("-")[0] for w in dest.glob("*.whl")} == expected
    assert set(closure["alpha"]) == expected
    with pytest.raises(gpu_bundle.BundleError, match="--platform win_amd64: expected a Linux tag"):
        gpu_bundle.target_environment(target, ["win_amd64"])


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow  # pip
@pytest.mark.network
@pytest.mark.skipif(not _pypi_reachable(), reason="needs the network: pypi.org cannot be reached")
def test_prepare_downloads_wheels_for_another_python_from_pypi(tmp_path):
    other = "3.12" if THIS_PYTHON != "3.12" else "3.11"
    proc = _gpu_check(tmp_path / "unused", "--prepare", str(tmp_path / "b"), "--target-python", other, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["target_python"] == other
    assert any(w.startswith("pytest-") for w in manifest["wheels"])
    assert any(w.lower().startswith("dominate-") for w in manifest["wheels"])


# ----- the dry run -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cpu_dry_run_with_a_bundle_passes_every_step_and_leaves_only_the_summary_files(tmp_path, bundle):
    benchmarks = tmp_path / "benchmarks"
    build_tiny_dataset(benchmarks / "ceilnet_synthetic100", n_train=0, n_reflection=0, n_test=2)
    build_tiny_dataset(benchmarks / "real_pairs5", n_train=0, n_reflection=0, n_test=2)
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _gpu_check(out, "--cpu-dry-run", "--bundle", str(bundle), "--benchmarks", str(benchmarks), work=work,
                      timeout=1200)
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert proc.returncode == 0, json.dumps(summary, indent=1)[-4000:] + proc.stdout[-3000:]
    # $OUT holds the three files and nothing else: checkpoints, data and packages stay in the work folder.
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_check.OUT_FILES)
    assert (work / "step7" / "checkpoints" / "quality" / "latest_net_G_T.pth").is_file()
    # The plan comes first: the steps' limits add up to the budget, and the GPU run leaves a rerun's room.
    plan, machine = proc.stdout.splitlines()[:2]
    limits = [float(x) for x in re.findall(r" ([\d.]+)(?: \+|$)", plan.split(": ", 1)[1].split(" = ")[0])]
    assert len(limits) == 7 and sum(limits) == pytest.approx(summary["budget_s"], abs=0.5)  # the compiles left out
    assert plan.endswith(f"= --budget {summary['budget_s']:g}")
    room, largest = (float(x) for x in re.search(r"([\d.]+) s left to rerun .* the largest being ([\d.]+) s",
                                                  machine).groups())
    assert room >= largest > 0 and summary["machine_plan"]["fits"]
    assert summary["mode"] == "cpu-dry-run" and summary["passed"] is True
    assert sorted(steps) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sum(summary["plan_s"].values()) == pytest.approx(summary["budget_s"])
    planned = sum(gpu_check.STEP_SECONDS[s] for s in range(1, 8))
    assert summary["budget_s"] == pytest.approx(gpu_check.DRY_RUN_FACTOR * planned)
    assert all(s["status"] in ("passed", "skipped") and 0 <= s["seconds"] <= s["limit_s"] + 1
               for s in steps.values())
    assert steps[1]["details"]["cuda_available"] is False
    assert all(steps[1]["details"]["modules"].values())
    assert steps[1]["details"]["bundle"]["method"] == "nothing to install"  # this Python has dominate and pytest
    assert "skipped" in steps[2]["details"]["pytest"]  # the CUDA tests, with their reason
    runs = steps[3]["details"]["runs"]
    assert runs["fp32"] == runs["continue_train"] == "passed"
    assert set(steps[3]["details"]["left_out"]) >= {"amp_fp16"}  # CUDA-only, and said so
    gloo = steps[4]["details"]["runs"]["gloo, 2 process(es)"]
    assert gloo == {"status": "passed", "weight_difference_from_rank_0": 0.0}
    assert steps[5]["details"]["whole"]["peak_mib"] > 0 and steps[5]["details"]["tiled"]["peak_mib"] > 0
    plain = steps[6]["details"]["variants"]["plain"]
    assert plain["host_reads_per_step"] == 2  # the finiteness check and the printed losses
    assert steps[8]["status"] == "skipped" and "cold compile" in steps[8]["details"]["left_out"]
    quality = steps[7]["details"]
    assert quality["photos"] == str(bundle / "demo_data" / "trainA1")  # no --photos: the bundle's demo photos
    assert quality["vgg_weights"] == str(bundle / "vgg19_features.pth")  # the bundle's VGG19 layers
    assert quality["validation"] and "PSNR_T_3" in quality["validation"][-1]  # validated on the held-out split
    assert set(quality["scores"]) == {"demo_test", "ceilnet_synthetic100", "real_pairs5"}
    for scores in quality["scores"].values():
        assert scores["images"] == 2
        assert scores["T_3_minus_I_PSNR"] == pytest.approx(scores["PSNR_T_3"] - scores["PSNR_I"], abs=1e-3)
    log = (out / "gpu_check.log").read_text()
    assert "step 7" in log and "make_synthetic_set.py" in log and "train.py" in log and "evaluate.py" in log
    assert proc.stdout.rstrip().splitlines()[-1].endswith("all passed")


def test_the_check_runs_pytest_without_the_machines_plugins(tmp_path):
    check = gpu_check.Check(gpu_check.parse_args(["--out", str(tmp_path / "o"), "--work", str(tmp_path / "w")]))
    assert check.environment()["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"


@pytest.mark.slow
def test_a_failing_step_fails_the_run_and_names_the_rerun(tmp_path):
    out = tmp_path / "out"
    proc = _gpu_check(out, "--cpu-dry-run", "--steps", "7", "--photos", str(tmp_path / "none"),
                      work=tmp_path / "work", timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 1
    assert summary["passed"] is False
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(1, "passed"), (7, "failed")]
    assert "make_synthetic_set.py failed" in summary["steps"][1]["details"]["error"]
    assert proc.stdout.rstrip().splitlines()[-1] == (f"rerun them: bash tools/gpu_check.sh --cpu-dry-run --photos "
                                                      f"{tmp_path / 'none'} --steps 7 (default budget 82.5 s)")


@pytest.fixture
def model(make_options, tmp_path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        torch.manual_seed(0)
        model = create_model(make_options("train", "--dataroot", str(tmp_path), "--name", "reads"))
    model.set_input(brightened_batch())
    model.train()
    return model


def test_a_training_step_reads_the_device_once_and_the_losses_once_more(model):
    count = benchmark.count_host_reads
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
