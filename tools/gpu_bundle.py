"""The GPU check's offline bundle: made on a machine with network, installed on the GPU machine from the folder alone.

  bash tools/gpu_check.sh --prepare DIR [--target-python 3.12] [--platform manylinux2014_x86_64]
                                        [--vgg_weights PATH] [--benchmarks DIR] [--photos DIR] [--find-links D]

DIR receives (a few tens of MB; at most MAX_BUNDLE_MIB):
  wheels/                the wheels of REQUIREMENTS and of their dependencies on the TARGET Python and platform
  demo_data/             scripts/make_demo_data.py's dataset (scikit-image's bundled photos): steps 3-5, and the
                         training photos and held-out test set of the quality run (step 7)
  vgg19_features.pth     the layers of torchvision's ImageNet VGG19 that the perceptual loss uses (0.4 MB of the
                         548 MB file), from --vgg_weights PATH or torch's cache; absent if neither has it
  benchmarks/<set>/      testB/ + testA1/ of each scoring set under --benchmarks (optional)
  photos/                a copy of --photos (optional), the quality run's training photos
  manifest.json          target Python and platform, requirements, every file with its size; written last

The wheels: `pip download --only-binary=:all: --python-version --platform` picks wheels built for the target,
but pip evaluates the dependencies' environment markers (python_version < "3.11", sys_platform == ...) for the
Python it runs under, not for the target. So the download is checked against the target: every wheel's
Requires-Dist is evaluated for the target's Python and platform (target_environment), a dependency the target
needs and pip skipped is downloaded too, and one only this machine needed is dropped.

On the GPU machine `bash tools/gpu_check.sh --bundle DIR` installs, from DIR/wheels only (pip --no-index; if
that Python has no pip, the pure-Python wheels are unpacked), the requirements that its Python lacks, into the
check's work folder: a pytest already there stays in use with its own plugins. --find-links D makes --prepare
itself offline (wheels from D).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What a GPU machine's environment may lack: test.py writes its result page with dominate; step 2 runs pytest.
REQUIREMENTS = ("dominate>=2.8", "pytest>=8")
# What it must already have (a CUDA build of torch cannot be carried in a few tens of MB).
EXPECTED_INSTALLED = ("torch", "torchvision", "numpy", "PIL", "skimage", "tqdm")
MAX_BUNDLE_MIB = 60  # the bundle travels with the checkout, whose extra paths may total 64 MiB
VGG_KEEP = 7  # layers 0..6 of vgg19.features (conv1_1 .. relu2_1), as models/networks.VGGFeatures
VGG_FILE = "vgg19-dcbb9e9d.pth"
MAX_ROUNDS = 10  # rounds of downloading what the target still lacks (each adds a level of the dependency tree)


class BundleError(RuntimeError):
    """The bundle cannot be made or used; the message says what to do."""


def python_tag(version: str) -> str:
    """Return the CPython tag of a version such as 3.12 (cp312)."""
    major, minor = version.split(".")[:2]
    return f"cp{major}{minor}"


def download_command(dest: Path, target_python: str, platforms: list[str], find_links: list[str],
                     requirements: tuple[str, ...] | list[str] = REQUIREMENTS, no_deps: bool = False) -> list[str]:
    """Return the pip command that downloads wheels of requirements built for the target Python and platforms.

    pip picks wheels whose tags fit the target, but takes the dependencies' markers for its own Python:
    download_for_target corrects that.
    """
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest),
               "--only-binary=:all:", "--python-version", target_python, "--implementation", "cp",
               "--abi", python_tag(target_python)]
    for platform in platforms:
        command += ["--platform", platform]
    if no_deps:
        command.append("--no-deps")
    if find_links:
        command.append("--no-index")
        for folder in find_links:
            command += ["--find-links", folder]
    return [*command, *requirements]


def canonical(name: str) -> str:
    """Return a distribution name in PEP 503 form (lower case, runs of - _ . as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def target_environment(target_python: str, platforms: list[str]) -> dict[str, str]:
    """Return the environment-marker values of a CPython target on Linux (PEP 508), from its version and platform tag.

    A version X.Y stands for X.Y.0 in python_full_version.
    """
    match = re.match(r"(?:linux|manylinux\d+|manylinux_\d+_\d+|musllinux_\d+_\d+)_(.+)$", platforms[0])
    if match is None:
        raise BundleError(f"--platform {platforms[0]}: expected a Linux tag such as manylinux2014_x86_64")
    machine = match.group(1)
    parts = target_python.split(".")
    full = ".".join((parts + ["0"])[:3])
    return {"python_version": ".".join(parts[:2]), "python_full_version": full, "implementation_name": "cpython",
            "implementation_version": full, "platform_python_implementation": "CPython", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": machine,
            "platform_release": "", "platform_version": "", "extra": ""}


def wheel_requirements(wheel: Path) -> list[str]:
    """Return the Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode("utf-8", "replace")
    header = text.split("\n\n", 1)[0]
    return [line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("Requires-Dist:")]


def needed_distributions(wheels: Path, requirements: tuple[str, ...] | list[str],
                         environment: dict[str, str]) -> tuple[set[str], list[str]]:
    """Return (the distributions the target needs, the requirements of those without a wheel in the folder).

    Starts from requirements and follows each wheel's Requires-Dist whose marker holds in the target's
    environment (extras of requirements are not followed: REQUIREMENTS names none).
    """
    from packaging.requirements import Requirement

    have = {canonical(w.name.split("-")[0]): w for w in wheels.glob("*.whl")}
    needed: set[str] = set()
    missing: list[str] = []
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name in needed or (requirement.marker is not None and not requirement.marker.evaluate(environment)):
            continue
        needed.add(name)
        if name in have:
            todo += [Requirement(r) for r in wheel_requirements(have[name])]
        else:  # without its marker, which pip would evaluate for its own Python
            missing.append(f"{requirement.name}{requirement.specifier}")
    return needed, sorted(missing)


def download_for_target(dest: Path, requirements: tuple[str, ...] | list[str], target_python: str,
                        platforms: list[str], find_links: list[str]) -> dict[str, list[str]]:
    """Download into dest the wheels of requirements and of every dependency on the target.

    Returns each requirement's distributions on the target (itself and its dependencies, PEP 503 names).

    pip resolves with its own Python's markers; what the target needs besides is downloaded without
    dependencies (its own are then followed in the next round), and a wheel only this machine needed is removed.
    """
    try:
        import packaging.requirements  # noqa: F401  (what reads the wheels' markers)
    except ImportError:
        raise BundleError("--prepare reads the wheels' dependency markers with the 'packaging' module: "
                          "pip install packaging") from None
    environment = target_environment(target_python, platforms)
    run(download_command(dest, target_python, platforms, find_links, requirements), "pip download")
    for _ in range(MAX_ROUNDS):
        needed, missing = needed_distributions(dest, requirements, environment)
        if not missing:
            break
        run(download_command(dest, target_python, platforms, find_links, missing, no_deps=True),
            "pip download (dependencies of the target)")
    else:
        raise BundleError(f"the target's dependencies {missing} are still missing after {MAX_ROUNDS} rounds")
    for wheel in dest.glob("*.whl"):
        if canonical(wheel.name.split("-")[0]) not in needed:
            wheel.unlink()
    return {r: sorted(needed_distributions(dest, [r], environment)[0]) for r in requirements}


def pip_works(python: str) -> bool:
    """Return whether `python -m pip` runs."""
    try:
        return subprocess.run([python, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(command: list[str], what: str, timeout: float | None = None) -> None:
    """Run command (within timeout seconds); a failure is a BundleError naming `what` with the last output lines."""
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BundleError(f"{what} did not finish within {timeout:.0f} s: {' '.join(command)}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BundleError(f"{what} failed (exit {proc.returncode}): {' '.join(command)}\n{tail}")


def vgg_source(given: str | None) -> Path | None:
    """Return the torchvision VGG19 file to take the perceptual loss's layers from: given, else torch's cache."""
    if given:
        if not Path(given).is_file():
            raise BundleError(f"--vgg_weights {given}: no such file")
        return Path(given)
    cache = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / VGG_FILE
    return cache if cache.is_file() else None


def write_vgg_layers(source: Path, dest: Path) -> None:
    """Write the features.0..6 tensors of a torchvision vgg19 state_dict (what --vgg_weights PATH reads) to dest."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    kept = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < VGG_KEEP}
    if not kept:
        raise BundleError(f"--vgg_weights {source}: no features.* tensors (not a torchvision vgg19 state_dict)")
    torch.save(kept, dest)


def copy_sets(source: Path, dest: Path) -> list[str]:
    """Copy testB/ and testA1/ of every folder under source that has a testB/; return the set names."""
    names = sorted(p.name for p in source.iterdir() if (p / "testB").is_dir()) if source.is_dir() else []
    if not names:
        raise BundleError(f"--benchmarks {source}: no set folders with a testB/ in it")
    for name in names:
        for part in ("testB", "testA1"):
            if (source / name / part).is_dir():
                shutil.copytree(source / name / part, dest / name / part)
    return names


def files_of(folder: Path) -> list[dict[str, Any]]:
    """Return [{path, bytes}] for every file under folder, relative to it, sorted."""
    return [{"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file()]


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Make the bundle in args.dir (written as DIR.partial, renamed when complete); return its manifest."""
    final = Path(args.dir).resolve()
    if final.exists() and any(final.iterdir()):
        raise BundleError(f"{final} is not empty: choose a new folder for --prepare")
    work = final.with_name(final.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not pip_works(sys.executable):
        raise BundleError(f"{sys.executable} -m pip does not run: --prepare needs pip (python -m ensurepip)")
    closure = download_for_target(work / "wheels", REQUIREMENTS, args.target_python, args.platform, args.find_links)
    run([sys.executable, "scripts/make_demo_data.py", str(work / "demo_data"), "--seed", "0"], "make_demo_data.py")
    notes = []
    vgg = vgg_source(args.vgg_weights)
    if vgg is not None:
        write_vgg_layers(vgg, work / "vgg19_features.pth")
    else:
        notes.append(f"no VGG19 weights (no --vgg_weights, no {VGG_FILE} in torch's cache): the GPU run trains "
                     "with --vgg_weights random")
    sets = copy_sets(Path(args.benchmarks), work / "benchmarks") if args.benchmarks else []
    if args.photos:
        shutil.copytree(args.photos, work / "photos")
    files = files_of(work)
    total = sum(f["bytes"] for f in files)
    if total > MAX_BUNDLE_MIB * 2**20:
        shutil.rmtree(work)
        raise BundleError(f"the bundle would hold {total / 2**20:.0f} MiB, over {MAX_BUNDLE_MIB} MiB: give "
                          "--photos and --benchmarks smaller folders")
    manifest = {
        "target_python": args.target_python, "platforms": args.platform, "requirements": list(REQUIREMENTS),
        "expected_installed": list(EXPECTED_INSTALLED),
        "wheels": sorted(p.name for p in (work / "wheels").glob("*.whl")), "closure": closure,
        "benchmark_sets": sets, "photos": bool(args.photos), "vgg19_features": vgg is not None,
        "vgg19_source": str(vgg) if vgg else None, "bytes": total, "notes": notes, "files": files,
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if final.exists():
        final.rmdir()
    work.rename(final)
    return manifest


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Unpack a pure-Python wheel into site (what pip does for such a wheel, less scripts and byte-code)."""
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))
        if "Root-Is-Purelib: true" not in archive.read(info).decode():
            raise BundleError(f"{wheel.name} is not a pure-Python wheel: without pip it cannot be installed")
        archive.extractall(site)


def missing_requirements(python: str, requirements: tuple[str, ...] | list[str] = REQUIREMENTS,
                         timeout: float | None = None) -> tuple[list[str], dict[str, str | None]]:
    """Return (the requirements `python` lacks or has too old, the version it has of each requirement or None).

    Requirements are `name>=version`; versions compare by their leading numbers.
    """
    names = [r.split(">=")[0] for r in requirements]
    probe = ("import importlib.metadata as m, json, sys\n"
             "def version(name):\n"
             "    try:\n"
             "        return m.version(name)\n"
             "    except m.PackageNotFoundError:\n"
             "        return None\n"
             "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")
    try:
        proc = subprocess.run([python, "-c", probe, *names], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BundleError(f"{python} did not report its packages within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BundleError(f"{python} could not report its packages: {proc.stderr.strip()[-500:]}")
    versions = json.loads(proc.stdout)

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.match(r"\d+(?:\.\d+)*", text).group(0).split("."))

    missing = [r for r, n in zip(requirements, names) if versions[n] is None or
               numbers(versions[n]) < numbers(r.split(">=")[1])]
    return missing, versions


def python_version(python: str, timeout: float | None = None) -> str:
    """Return the X.Y version of the interpreter `python`."""
    proc = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BundleError(f"{python} does not run: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def install_bundle(bundle: Path, site: Path, python: str = sys.executable, timeout: float = 300) -> dict[str, Any]:
    """Install into site, from the bundle alone (no index), the requirements that `python` lacks; return what was done.

    A requirement `python` already satisfies is left alone: an installed pytest keeps its own plugins. A bundle
    prepared for another Python version is refused: its wheels were chosen for that one. All within timeout s.
    """
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"--bundle {bundle}: no manifest.json (make it with gpu_check.sh --prepare)")
    manifest = json.loads(manifest_path.read_text())
    have = python_version(python, timeout)
    if ".".join(manifest["target_python"].split(".")[:2]) != have:
        raise BundleError(f"--bundle {bundle} was prepared for Python {manifest['target_python']}, this is "
                          f"{have}: prepare it again with --target-python {have}")
    missing, versions = missing_requirements(python, manifest["requirements"], timeout)
    site.mkdir(parents=True, exist_ok=True)
    wheels = bundle / "wheels"
    done = {"site": str(site), "wheels": manifest["wheels"], "installed": missing,
            "already_there": {n: v for n, v in versions.items() if v is not None}}
    if not missing:
        return {"method": "nothing to install", **done}
    if pip_works(python):
        run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--find-links",
             str(wheels), "--target", str(site), "--upgrade", *missing], "pip install", timeout)
        return {"method": "pip install --no-index --find-links", **done}
    wanted = {name for r in missing for name in manifest["closure"][r]}
    for wheel in sorted(wheels.glob("*.whl")):
        if canonical(wheel.name.split("-")[0]) in wanted:
            unpack_wheel(wheel, site)
    return {"method": "unpacked (this Python has no pip)", **done}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the options of --prepare."""
    parser = argparse.ArgumentParser(prog="gpu_check.sh --prepare", description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="the bundle folder to create (new or empty)")
    parser.add_argument("--target-python", default="3.12", help="Python version of the GPU machine (X.Y)")
    parser.add_argument("--platform", action="append", default=None,
                        help="pip platform tag(s) of the GPU machine (default manylinux2014_x86_64)")
    parser.add_argument("--vgg_weights", default=None, help="a torchvision vgg19 state_dict (default: torch's cache)")
    parser.add_argument("--benchmarks", default=None, help="folder of scoring sets (each with testB/ and testA1/)")
    parser.add_argument("--photos", default=None, help="photo folder for the quality run's training set")
    parser.add_argument("--find-links", action="append", default=[],
                        help="take the wheels from this folder instead of the package index (offline)")
    args = parser.parse_args(argv)
    args.platform = args.platform or ["manylinux2014_x86_64"]
    return args


def prepare_command(argv: list[str] | None = None) -> int:
    """Make the bundle (gpu_check.sh --prepare); print its summary; return the exit status (1 with a one-line error)."""
    try:
        manifest = prepare(parse_args(argv))
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"bundle for Python {manifest['target_python']} ({', '.join(manifest['platforms'])}): "
          f"{manifest['bytes'] / 2**20:.1f} MiB; wheels: {', '.join(manifest['wheels'])}")
    for note in manifest["notes"]:
        print("note: " + note)
    return 0
