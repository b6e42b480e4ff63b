"""scripts/gpu_check.sh: its time plan, the offline bundle (--prepare, --bundle), the CPU dry run; loss reads per step.

Nothing here needs the network except the test marked `network` (a real download from PyPI for another Python),
which skips itself when PyPI cannot be reached. The offline tests build the bundle from wheels re-packed from
this environment's installed dominate and pytest (and their dependencies).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_tiny_dataset

from models.base_model import NonFiniteLossError
from options.model_config import create_model

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import gpu_check  # noqa: E402
import gpu_prepare  # noqa: E402

THIS_PYTHON = ".".join(map(str, sys.version_info[:2]))


def _gpu_check(out: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


# ----- the time plan ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [480.0, 600.0, 97.3])
@pytest.mark.parametrize("steps", [[1, 2, 3, 4, 5, 6, 7], [1, 5], [1, 3, 7]])
def test_the_step_limits_add_up_to_the_budget(budget, steps):
    limits = gpu_check.plan(budget, steps)
    assert sorted(limits) == steps and all(v > 0 for v in limits.values())
    assert sum(limits.values()) == pytest.approx(budget, abs=1e-6)
    if len(steps) == 7 and budget == 480:
        assert limits == {s: float(v) for s, v in gpu_check.STEP_SHARES.items()}  # the header's figures


def test_a_command_never_outlives_its_step(tmp_path):
    check = gpu_check.Check(gpu_check.parse_args(["--cpu-dry-run", "--out", str(tmp_path), "--budget", "8"]))
    start = time.time()
    # Step 1's share of 8 s is under the 5 s a command needs at least: refused at once, not run for 600 s.
    check.record(1, "sleep", lambda: {"exit": check.run(["sleep", "60"], 600)[0]})
    assert time.time() - start < 5
    assert check.summary["steps"][0]["status"] == "failed" and "out of time" in check.summary["steps"][0]["details"][
        "error"]
    check = gpu_check.Check(gpu_check.parse_args(["--out", str(tmp_path), "--budget", "20", "--steps", "1,5"]))
    start = time.time()
    check.record(1, "sleep", lambda: {"exit": check.run(["sleep", "60"], 600)[0]})
    assert check.summary["steps"][0]["details"]["exit"] == 124  # killed at step 1's limit: 20 x 25 / 65 s
    assert time.time() - start == pytest.approx(check.plan[1], abs=3)


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


def test_prepare_gathers_the_wheels_and_data_of_the_gpu_run(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target_python"] == THIS_PYTHON and manifest["requirements"] == list(gpu_prepare.REQUIREMENTS)
    names = {re.match(r"([A-Za-z0-9_]+)-", w).group(1).lower() for w in manifest["wheels"]}
    assert {"dominate", "pytest", "pluggy", "iniconfig", "packaging", "pygments"} <= names
    assert (bundle / "demo_data" / "manifest.json").is_file() and manifest["vgg19_features"]
    assert manifest["bytes"] < 30 * 2**20  # tens of MB at most (here: no photos or benchmarks)
    assert sum(f["bytes"] for f in manifest["files"] if f["path"] != "manifest.json") == manifest["bytes"]
    from models.networks import load_vgg_features

    assert len(load_vgg_features(str(bundle / "vgg19_features.pth")).layers) == 7  # what --vgg_weights PATH reads


def test_a_fresh_environment_installs_from_the_bundle_alone(bundle, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--no-index", "--find-links", str(bundle / "wheels"),
                              *gpu_prepare.REQUIREMENTS], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    probe = subprocess.run([python, "-c", "import dominate, pytest; print(pytest.__version__)"], capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip() == importlib.metadata.version("pytest")


def test_the_bundle_installs_without_pip_and_refuses_another_python(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_prepare, "pip_works", lambda python: False)
    done = gpu_prepare.install_bundle(bundle, tmp_path / "site")
    assert done["method"].startswith("unpacked")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run([sys.executable, "-c", "import dominate, pytest, pluggy, dominate.tags; "
                            "print(pytest.__file__)"], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 0 and probe.stdout.startswith(str(tmp_path / "site")), probe.stderr
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "target_python": "3.99"}))
    with pytest.raises(gpu_prepare.BundleError, match=rf"prepared for Python 3.99, this is {THIS_PYTHON}: .*"
                                                      rf"--target-python {THIS_PYTHON}"):
        gpu_prepare.install_bundle(other, tmp_path / "site2")


def test_the_download_resolves_for_the_target_python_and_platform(tmp_path):
    command = gpu_prepare.download_command(tmp_path, "3.12", ["manylinux2014_x86_64"], [])
    text = " ".join(command)
    for part in ("pip download", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 "--abi cp312", "--platform manylinux2014_x86_64", f"--dest {tmp_path}"):
        assert part in text, part
    assert "--no-deps" not in command and "--no-index" not in command  # dependencies resolved, from the index
    assert command[-2:] == list(gpu_prepare.REQUIREMENTS)
    offline = gpu_prepare.download_command(tmp_path, "3.12", ["manylinux2014_x86_64"], ["/w"])
    assert "--no-index" in offline and offline[offline.index("--find-links") + 1] == "/w"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


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

def test_cpu_dry_run_with_a_bundle_passes_every_step_within_its_plan(tmp_path, bundle):
    benchmarks = tmp_path / "benchmarks"
    build_tiny_dataset(benchmarks / "ceilnet_synthetic100", n_train=0, n_reflection=0, n_test=2)
    build_tiny_dataset(benchmarks / "real_pairs5", n_train=0, n_reflection=0, n_test=2)
    out = tmp_path / "out"
    proc = _gpu_check(out, "--cpu-dry-run", "--bundle", str(bundle), "--benchmarks", str(benchmarks))
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert proc.returncode == 0, json.dumps(summary, indent=1)[-4000:] + proc.stdout[-3000:]
    assert summary["mode"] == "cpu-dry-run" and summary["passed"] is True
    assert sorted(steps) == [1, 2, 3, 4, 5, 6, 7]
    assert sum(summary["plan_s"].values()) == pytest.approx(summary["budget_s"]) == 600
    assert all(s["status"] == "passed" and 0 <= s["seconds"] <= s["limit_s"] + 1 for s in steps.values())
    assert steps[1]["details"]["cuda_available"] is False
    assert steps[1]["details"]["bundle"]["method"].startswith("pip install --no-index")
    assert all(steps[1]["details"]["modules"].values())
    assert "skipped" in steps[2]["details"]["pytest"]  # the CUDA tests, with their reason
    runs = steps[3]["details"]["runs"]
    assert runs["fp32"] == runs["continue_train"] == "passed"
    assert set(steps[3]["details"]["left_out"]) >= {"amp_fp16", "compile"}  # CUDA-only, and said so
    assert steps[4]["details"]["backend"].startswith("gloo")
    assert steps[5]["details"]["whole"]["peak_mib"] > 0 and steps[5]["details"]["tiled"]["peak_mib"] > 0
    plain = steps[6]["details"]["variants"]["plain"]
    assert plain["host_reads_per_step"] == 2  # the finiteness check and the printed losses
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


def test_a_failing_step_fails_the_run(tmp_path):
    # Step 5 alone has no checkpoint of step 3 to test: it fails, the summary says so, the exit status is 1.
    out = tmp_path / "out"
    proc = _gpu_check(out, "--cpu-dry-run", "--steps", "5", timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 1
    assert summary["passed"] is False
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(1, "passed"), (5, "failed")]
    assert "checkpoint" in summary["steps"][1]["details"]["error"]


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
