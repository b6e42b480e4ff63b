"""The GPU check's offline bundle: gather on a machine with network, install on the GPU machine from the folder alone.

  bash scripts/gpu_check.sh --prepare DIR [--target-python 3.12] [--platform manylinux2014_x86_64]
                                          [--vgg_weights PATH] [--benchmarks DIR] [--photos DIR] [--find-links D]

DIR receives (a few tens of MB; at most MAX_BUNDLE_MIB):
  wheels/                the wheels of REQUIREMENTS and their dependencies, resolved by pip for the TARGET
                         Python and platform (not this machine's): what the GPU machine lacks
  demo_data/             scripts/make_demo_data.py's dataset (scikit-image's bundled photos): steps 3-5, and the
                         training photos and held-out test set of the quality run (step 7)
  vgg19_features.pth     the layers of torchvision's ImageNet VGG19 that the perceptual loss uses (0.4 MB of the
                         548 MB file), from --vgg_weights PATH or torch's cache; absent if neither has it
  benchmarks/<set>/      testB/ + testA1/ of each scoring set under --benchmarks (optional)
  photos/                a copy of --photos (optional), the quality run's training photos
  manifest.json          target Python and platform, requirements, every file with its size; written last

Then on the GPU machine `bash scripts/gpu_check.sh --bundle DIR` installs the wheels from DIR/wheels only
(pip --no-index; if that Python has no pip, the pure-Python wheels are unpacked instead) into the check's
own folder and takes every input from DIR. --find-links D makes --prepare itself offline (wheels from D).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What the GPU machine's environment lacks: test.py writes its result page with dominate; step 2 runs pytest.
REQUIREMENTS = ("dominate>=2.8", "pytest>=8")
# What it must already have (a CUDA build of torch cannot be carried in a few tens of MB).
EXPECTED_INSTALLED = ("torch", "torchvision", "numpy", "PIL", "skimage", "tqdm")
MAX_BUNDLE_MIB = 60  # the bundle travels with the checkout, whose extra paths may total 64 MiB
VGG_KEEP = 7  # layers 0..6 of vgg19.features (conv1_1 .. relu2_1), as models/networks.VGGFeatures
VGG_FILE = "vgg19-dcbb9e9d.pth"


class BundleError(RuntimeError):
    """The bundle cannot be made or used; the message says what to do."""


def python_tag(version: str) -> str:
    """Return the CPython tag of a version such as 3.12 (cp312)."""
    major, minor = version.split(".")[:2]
    return f"cp{major}{minor}"


def download_command(dest: Path, target_python: str, platforms: list[str], find_links: list[str]) -> list[str]:
    """Return the pip command that downloads REQUIREMENTS' wheels, with dependencies, for the target interpreter."""
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest),
               # A target other than this interpreter needs binary-only resolution; pip then evaluates every
               # dependency's markers for the target (python_version, platform), not for this machine.
               "--only-binary=:all:", "--python-version", target_python, "--implementation", "cp",
               "--abi", python_tag(target_python)]
    for platform in platforms:
        command += ["--platform", platform]
    if find_links:
        command.append("--no-index")
        for folder in find_links:
            command += ["--find-links", folder]
    return [*command, *REQUIREMENTS]


def pip_works(python: str) -> bool:
    """Return whether `python -m pip` runs."""
    try:
        return subprocess.run([python, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(command: list[str], what: str) -> None:
    """Run command; a failure is a BundleError naming `what` with the command's last output lines."""
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
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
    run(download_command(work / "wheels", args.target_python, args.platform, args.find_links), "pip download")
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
        "wheels": [f["path"].split("/", 1)[1] for f in files if f["path"].startswith("wheels/")],
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


def install_bundle(bundle: Path, site: Path, python: str = sys.executable) -> dict[str, Any]:
    """Install the bundle's wheels into site from the bundle alone (no index); return what was done.

    A bundle prepared for another Python version is refused: its wheels were resolved for that one.
    """
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"--bundle {bundle}: no manifest.json (make it with gpu_check.sh --prepare)")
    manifest = json.loads(manifest_path.read_text())
    have = ".".join(map(str, sys.version_info[:2]))
    if manifest["target_python"] != have:
        raise BundleError(f"--bundle {bundle} was prepared for Python {manifest['target_python']}, this is "
                          f"{have}: prepare it again with --target-python {have}")
    site.mkdir(parents=True, exist_ok=True)
    wheels = bundle / "wheels"
    if pip_works(python):
        run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--find-links",
             str(wheels), "--target", str(site), "--upgrade", *manifest["requirements"]], "pip install")
        method = "pip install --no-index --find-links"
    else:
        for wheel in sorted(wheels.glob("*.whl")):
            unpack_wheel(wheel, site)
        method = "unpacked (this Python has no pip)"
    return {"method": method, "site": str(site), "wheels": manifest["wheels"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options of --prepare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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


def main(argv: list[str] | None = None) -> int:
    """Make the bundle; print its summary; return the exit status (1 with a one-line error)."""
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


if __name__ == "__main__":
    sys.exit(main())
