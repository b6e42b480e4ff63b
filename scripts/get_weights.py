"""Fetch the authors' pretrained IBCLN into checkpoints/IBCLN/ and check that both generators load.

Usage: python scripts/get_weights.py [--out checkpoints/IBCLN] [--archive FILE] [--force]

Without --archive it downloads the pretrained model the authors link from their repository
(github.com/JHL-HUST/IBCLN, "Download Pre-trained Model": a public Google Drive file) with the gdown package
(pip install gdown, or pip install -e .[weights] in a checkout). With --archive it unpacks a copy downloaded by
hand instead. From the archive (zip or tar, at any folder depth) it takes <epoch>_net_G_T.pth and
<epoch>_net_G_R.pth, loads both as IBCLN generators (weights_only: no code in them runs), and only then moves
them into --out. Both files already there: they are checked and nothing is downloaded (--force fetches again).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile

try:
    from models.api import DEFAULT_WEIGHTS, ReflectionRemover, load_ibcln, weight_paths
    from util.errors import UserError, exit_on_user_error
except ModuleNotFoundError as err:  # a clone where the project is not installed: only scripts/ is on sys.path
    sys.exit(f"error: {err}: install this project first: pip install -e . in the repository root")

# The authors' "pre-trained model" link (README of github.com/JHL-HUST/IBCLN, section Test).
DRIVE_FILE_ID = "1Dnlb875jP-F3vcFHlolcPTXFn4RmnQNr"
DRIVE_URL = f"https://drive.google.com/file/d/{DRIVE_FILE_ID}/view"
GENERATOR_FILE = re.compile(r"^(?P<epoch>.+)_net_(?P<net>G_T|G_R)\.pth$")


def download(folder: str) -> str:
    """Return the path of the authors' archive downloaded into folder (a UserError when that fails)."""
    try:
        import gdown
    except ImportError:
        raise UserError("downloading from Google Drive needs the 'gdown' package: pip install gdown (or, in a "
                        f"checkout, pip install -e .[weights]); or download {DRIVE_URL} by hand and pass it with "
                        "--archive") from None
    target = os.path.join(folder, "ibcln_pretrained.download")
    try:
        path = gdown.download(id=DRIVE_FILE_ID, output=target, quiet=False)
    except Exception as err:  # gdown raises its own error types for quota, permission and network failures
        raise UserError(f"could not download {DRIVE_URL} ({type(err).__name__}: {err}); download it by hand "
                        "and pass it with --archive") from None
    if not path or not os.path.isfile(target):
        raise UserError(f"could not download {DRIVE_URL}; download it by hand and pass it with --archive")
    return target


def generator_members(names: list[str], archive: str) -> tuple[str, dict[str, str]]:
    """Return (epoch prefix, {"G_T": member, "G_R": member}) of the generator pair in an archive's member names.

    'final' is preferred when the archive holds several epochs; a missing pair is a UserError listing what is there.
    """
    found: dict[str, dict[str, str]] = {}
    for name in names:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        match = GENERATOR_FILE.match(base)
        if match and not name.replace("\\", "/").startswith("__MACOSX/"):
            found.setdefault(match["epoch"], {})[match["net"]] = name
    complete = sorted(epoch for epoch, nets in found.items() if len(nets) == 2)
    if not complete:
        shown = ", ".join(n for n in names if n.endswith(".pth")) or "no .pth files"
        raise UserError(f"{archive}: no pair <epoch>_net_G_T.pth / <epoch>_net_G_R.pth inside (found: {shown})")
    epoch = "final" if "final" in complete else complete[-1]
    return epoch, found[epoch]


def unpack(archive: str, folder: str) -> str:
    """Extract the generator pair of a zip or tar archive into folder (flat); return its epoch prefix."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            epoch, members = generator_members(zf.namelist(), archive)
            for net, member in members.items():
                with zf.open(member) as src, open(os.path.join(folder, f"{epoch}_net_{net}.pth"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return epoch
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            files = [m for m in tf.getmembers() if m.isfile()]
            epoch, members = generator_members([m.name for m in files], archive)
            for net, member in members.items():
                src = tf.extractfile(member)
                assert src is not None  # a regular file member always has a file object
                with src, open(os.path.join(folder, f"{epoch}_net_{net}.pth"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return epoch
    raise UserError(f"{archive}: not a zip or tar archive; unpack it by hand and copy final_net_G_T.pth and "
                    "final_net_G_R.pth into the --out folder")


def verify(folder: str, epoch: str) -> ReflectionRemover:
    """Return the model loaded from folder (both generators load as IBCLN generators, or a UserError says why)."""
    return load_ibcln(folder, device="cpu", epoch=epoch, channels_last=False)


def install(archive: str, out: str) -> tuple[str, ReflectionRemover]:
    """Unpack archive's generators, verify them, then move them into out; return (epoch prefix, the loaded model)."""
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unpack_", dir=out) as staging:
        epoch = unpack(archive, staging)
        model = verify(staging, epoch)
        for src, dst in zip(weight_paths(staging, epoch), weight_paths(out, epoch)):
            os.replace(src, dst)
    return epoch, model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default=DEFAULT_WEIGHTS, help="folder that receives the two generator files")
    parser.add_argument("--archive", default=None, help="unpack this local archive instead of downloading")
    parser.add_argument("--force", action="store_true", help="fetch again even if both files are in --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Fetch (or take --archive), unpack, verify and install the authors' generators."""
    args = parse_args(argv)
    if not args.force and args.archive is None and all(os.path.isfile(p) for p in weight_paths(args.out)):
        model = verify(args.out, "final")
        print(f"{args.out} already holds final_net_G_T.pth and final_net_G_R.pth; both load as IBCLN generators "
              f"(ngf {model.ngf}). --force fetches them again")
        return
    if args.archive is not None:
        if not os.path.isfile(args.archive):
            raise UserError(f"--archive {args.archive}: no such file")
        epoch, model = install(args.archive, args.out)
    else:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download_", dir=args.out) as tmp:
            epoch, model = install(download(tmp), args.out)
    count = sum(p.numel() for p in model.model.nets()["G_T"].parameters())
    print(f"installed {', '.join(weight_paths(args.out, epoch))}: both load as IBCLN generators (ngf {model.ngf}, "
          f"{count / 1e6:.2f} M parameters each)")
    if epoch != "final":
        print(f"note: the archive's generators are named {epoch}_net_*.pth: pass --epoch {epoch} to "
              "remove_reflection.py and test.py")


if __name__ == "__main__":
    exit_on_user_error(main)
