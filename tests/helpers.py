"""Helpers shared by the test files of every room: tiny data sets, scripts run as subprocesses, their checks.

Test files import from here (`from helpers import ...`: pyproject.toml puts tests/ on sys.path), never from each
other; the fixtures built on these are in tests/conftest.py. tests/README.md describes the layout.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"

# One intra-op thread per process by default (IBCLN_TEST_THREADS overrides): on a small machine shared with
# other jobs, OpenMP threads that spin-wait for each other make the small convolutions of these tests 5-10x
# slower than a single thread. Subprocesses started by run_script get the same setting.
TEST_THREADS = os.environ.get("IBCLN_TEST_THREADS", "1")

# skimage.data photos that ship with scikit-image (no download): bright enough for the synthesis to accept them.
T_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "coffee")
R_PHOTOS = ("coffee", "chelsea", "astronaut")

# train.py flags of a one-epoch CPU run of 2 samples at 32x32 (tests add --dataroot, --checkpoints_dir, ...).
TINY_TRAIN_FLAGS = ["--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random",
                    "--dataset_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0",
                    "--niter", "1", "--seed", "3"]

NETS = ("G_T", "G_R", "D")
# val_log.csv's columns for IBCLN's labels, written out (the tests of the writers compare against this).
VAL_HEADER = ["epoch", "samples", "lr", "seconds", "images", "PSNR_I", "SSIM_I", "PSNR_T_1", "SSIM_T_1", "PSNR_T_2",
              "SSIM_T_2", "PSNR_T_3", "SSIM_T_3"]


# ----- images and tiny data sets ----------------------------------------------------------------------------------


@functools.cache
def tracked_files() -> tuple[str, ...]:
    """Return the paths git tracks in the repository (listed once per session: conftest lists them at its start)."""
    names = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return tuple(names.splitlines())


def skimage_photo(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return the skimage.data photo `name` as an (H, W, 3) uint8 array, resized to size=(H, W) when given."""
    import skimage.data
    from PIL import Image

    array = getattr(skimage.data, name)()
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = np.ascontiguousarray(array[..., :3]).astype(np.uint8)
    if size is not None:
        array = np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.BICUBIC))
    return array


def write_png(array: np.ndarray, path: Path) -> Path:
    """Write an (H, W, 3) uint8 array as an image (the format from the suffix), creating the folder; return the path."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def read_rgb(path: Path) -> np.ndarray:
    """Return the image at path as an RGB uint8 array."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def random_image(seed: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """Return a random (H, W, 3) uint8 image drawn from seed."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def build_tiny_dataset(root: Path, n_train: int = 3, n_reflection: int = 2, n_test: int = 2,
                       train_size: tuple[int, int] = (72, 72), test_size: tuple[int, int] = (48, 64),
                       natural: int = 0, test_gt: bool = True) -> Path:
    """Create a resize_natural_3 folder under root and return root.

    trainA1 (n_train T photos), trainA2 (n_reflection R photos), testB (n_test inputs) and, with test_gt,
    testA1 (the matching ground truths, same names); natural > 0 adds that many real pairs in natural_T /
    natural_I. Images are skimage.data photos resized to train_size / test_size (H, W).
    """
    for k in range(n_train):
        write_png(skimage_photo(T_PHOTOS[k % len(T_PHOTOS)], train_size), root / "trainA1" / f"t{k}.png")
    for k in range(n_reflection):
        write_png(skimage_photo(R_PHOTOS[k % len(R_PHOTOS)], train_size), root / "trainA2" / f"r{k}.png")
    for k in range(natural):
        t = skimage_photo(T_PHOTOS[k % len(T_PHOTOS)], train_size)
        r = skimage_photo(R_PHOTOS[(k + 1) % len(R_PHOTOS)], train_size)
        i = np.clip(0.8 * t.astype(np.float64) + 0.3 * r, 0, 255).astype(np.uint8)
        write_png(t, root / "natural_T" / f"n{k}.png")
        write_png(i, root / "natural_I" / f"n{k}.png")
    for k in range(n_test):
        t = skimage_photo(T_PHOTOS[k % len(T_PHOTOS)], test_size)
        r = skimage_photo(R_PHOTOS[(k + 1) % len(R_PHOTOS)], test_size)
        i = np.clip(0.8 * t.astype(np.float64) + 0.3 * r, 0, 255).astype(np.uint8)
        write_png(i, root / "testB" / f"img{k}.png")
        if test_gt:
            write_png(t, root / "testA1" / f"img{k}.png")
    return root


def photo_pair(k: int, size: tuple[int, int] = (30, 42)) -> tuple[np.ndarray, np.ndarray]:
    """Return (input I, ground truth T) of size (H, W): photo k and photo k with a reflection added."""
    names = ("astronaut", "rocket", "coffee", "chelsea")
    t = skimage_photo(names[k % 4], size)
    r = skimage_photo(names[(k + 1) % 4], size)
    return np.clip(0.75 * t.astype(np.float64) + 0.35 * r, 0, 255).astype(np.uint8), t


def make_testb_set(root: Path, n: int, without_gt: int = 0) -> Path:
    """Write n pairs s0..s{n-1} in testB/testA1 and `without_gt` inputs without ground truth; return root."""
    for k in range(n + without_gt):
        i, t = photo_pair(k)
        write_png(i, root / "testB" / f"s{k}.png")
        if k < n:
            write_png(t, root / "testA1" / f"s{k}.png")
    return root


# (H, W) of make_sized_set's pairs: two to be aligned down to multiples of 32, one already a multiple of 32.
SIZED_SET = ((45, 70), (70, 100), (64, 96))


def make_sized_set(root: Path) -> Path:
    """Write one pair per size of SIZED_SET as testB/a<k>.png + testA1/a<k>.png; return root."""
    for k, size in enumerate(SIZED_SET):
        i, t = photo_pair(k, size)
        write_png(i, root / "testB" / f"a{k}.png")
        write_png(t, root / "testA1" / f"a{k}.png")
    return root


def aligned(path: Path) -> np.ndarray:
    """Return the image at path as the ERRNet-family loaders align it: PIL's default resize to multiples of 32."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        return np.asarray(img.resize((w // 32 * 32, h // 32 * 32)))


def independent_identity(root: Path, transform: Callable[[Path], np.ndarray] = read_rgb) -> tuple[float, float]:
    """Return the mean band-wise (PSNR, SSIM) of each testB input against its testA1 ground truth, computed here."""
    values = [bandwise(transform(path), transform(root / "testA1" / path.name))
              for path in sorted((root / "testB").iterdir())]
    return tuple(np.mean(values, axis=0))


def make_openrr_tree(root: Path, size: tuple[int, int] = (24, 32)) -> Path:
    """Write an OpenRR-1k-shaped tree: train_800 (3 pairs) and test_100 (2 pairs) one level deeper under their own
    name, as unzipping train_800.zip into train_800/ gives, and val_100 (2 pairs) directly; return root.

    Pair k of a split is <split>_000k.jpg in blended/ (input, random_image(seed)) and transmission_layer/
    (random_image(seed + 50)).
    """
    for split, n, doubled, seed in (("train_800", 3, True, 0), ("val_100", 2, False, 10), ("test_100", 2, True, 20)):
        folder = root / split / split if doubled else root / split
        for k in range(n):
            name = f"{split.split('_')[0]}_{k + 1:04d}.jpg"
            write_png(random_image(seed + k, size), folder / "blended" / name)
            write_png(random_image(seed + k + 50, size), folder / "transmission_layer" / name)
    return root


def make_rrw_session(session: Path, gt_folder: str, scenes: dict[str, int], gt_suffix: str = "_GT",
                     size: tuple[int, int] = (24, 32)) -> Path:
    """Write one RRW-shaped capture session: scene -> frames; a scene with a ground truth gets
    <gt_folder>/<scene><gt_suffix>.png, one whose name starts with 'nogt' none; return the session."""
    for s, (scene, frames) in enumerate(scenes.items()):
        for f in range(frames):
            write_png(random_image(100 + 10 * s + f, size), session / scene / f"frame_{30 + 25 * f:06d}.jpg")
        if not scene.startswith("nogt"):
            write_png(random_image(200 + s, size), session / gt_folder / f"{scene}{gt_suffix}.png")
    return session


def make_rrw_tree(root: Path) -> Path:
    """Write an RRW-shaped tree of two sessions (the ground-truth folder and suffix in two letter cases), plus a
    ground truth without a scene folder and a scene without a ground truth; return root."""
    make_rrw_session(root / "ref_hf3", "GT_hf3", {"wild_out1": 2, "wild_out2": 1, "nogt_scene": 1})
    make_rrw_session(root / "reflection_camera1", "gt_CAMERA1", {"room": 2}, gt_suffix="_gt")
    write_png(random_image(99), root / "ref_hf3" / "GT_hf3" / "orphan_GT.png")
    return root


def newer_real_sets(base: Path) -> dict[str, Path]:
    """Return set name -> folder: the test split of an OpenRR-1k-shaped tree and an RRW-shaped tree under base."""
    return {"openrr_test": make_openrr_tree(base / "OpenRR-1k") / "test_100", "rrw": make_rrw_tree(base / "RRW")}


def input_column(root: Path) -> tuple[int, float, float]:
    """Return (pairs with a ground truth, mean band-wise PSNR, mean SSIM of the input against it) of a test set."""
    from data.layouts import find_pairs

    scores = [bandwise(read_rgb(p.input), read_rgb(p.gt)) for p in find_pairs(str(root))[1] if p.gt]
    return len(scores), float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


# ----- weights ---------------------------------------------------------------------------------------------------


def load_make_weights():
    """Return the tests/fixtures/make_weights.py module (deterministic weights from a key list and a seed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_weights", FIXTURES / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def save_random_generators(ckpt: Path, prefix: str = "final", seed: int = 0, ngf: int = 64) -> None:
    """Write random-init G_T / G_R checkpoints of width ngf (torch seeded with seed) as <prefix>_net_G_*.pth."""
    from models.networks import ConvLSTMGenerator

    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator(ngf=ngf).state_dict(), ckpt / f"{prefix}_net_{name}.pth")


def identity_vgg(source: str) -> torch.nn.Module:
    """Return a stand-in for models.networks.load_vgg_features(source) that computes nothing: for tests whose models
    never compute the perceptual loss (building torchvision's whole VGG19 takes a second or more)."""
    from models.networks import VGGFeatures

    return VGGFeatures(torch.nn.Sequential(*[torch.nn.Identity()] * 7))


def load_state(path: Path) -> dict:
    """Return a saved state_dict or training state, loaded the safe way."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path, prefix_a: str = "final", prefix_b: str = "final") -> None:
    """Assert that two checkpoints (by default the final networks of two runs) hold bit-identical networks."""
    for net in NETS:
        sa, sb = load_state(a / f"{prefix_a}_net_{net}.pth"), load_state(b / f"{prefix_b}_net_{net}.pth")
        assert sa.keys() == sb.keys()
        different = [key for key in sa if not torch.equal(sa[key], sb[key])]
        assert not different, f"{net}: {len(different)} of {len(sa)} tensors differ, e.g. {different[0]}"


# ----- options and scripts ---------------------------------------------------------------------------------------


def parse_options(phase: str, args: Sequence[str], save: bool = False) -> argparse.Namespace:
    """Return TrainOptions (phase 'train') or TestOptions (phase 'test') parsed from args."""
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    options = TrainOptions() if phase == "train" else TestOptions()
    return options.parse([str(a) for a in args], save=save)


def script_env(**extra: str) -> dict[str, str]:
    """Return the environment of a script run by a test: this checkout's code first, one thread, extra variables."""
    env = dict(os.environ, OMP_NUM_THREADS=TEST_THREADS, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))
    return env


def run_script(script: str, *args: object, timeout: float = 300, cuda_visible: bool = True,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python <script> args` (train.py, test.py, ...) from the repository root; return the completed process.

    stdout and stderr are captured as text. cuda_visible=False hides every GPU (CUDA_VISIBLE_DEVICES="").
    """
    env = script_env(**({} if cuda_visible else {"CUDA_VISIBLE_DEVICES": ""}))
    command = [sys.executable, str(REPO_ROOT / script), *[str(a) for a in args]]
    return subprocess.run(command, cwd=str(cwd or REPO_ROOT), env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_training(root: Path, checkpoints: Path, name: str, *args: str, **popen_kwargs) -> subprocess.Popen:
    """Return a running train.py (TINY_TRAIN_FLAGS, 2 data workers, no mid-epoch save) on root, its output
    (stderr included) on proc.stdout."""
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), "--dataroot", str(root), "--name", name,
                             "--checkpoints_dir", str(checkpoints), *TINY_TRAIN_FLAGS, "--num_threads", "2",
                             "--save_latest_freq", "100000", *args],
                            cwd=REPO_ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen_kwargs)


def signal_at(proc: subprocess.Popen, seen: Callable[[str], bool], signum: int = signal.SIGTERM,
              group: bool = False, timeout: float = 300) -> str:
    """Send signum to proc (its whole process group with group) at the first output line for which seen(line) is
    true (none if it ends before); return its whole output once it has ended."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if seen(line):
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
            break
    rest, _ = proc.communicate(timeout=timeout)
    return "".join(lines) + rest


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, status: int | None = None) -> str:
    """Assert a failed run (exit status `status` when given, else any non-zero) with a single 'error: ...' line on
    stderr holding every needle and no traceback; return that line."""
    if status is None:
        assert proc.returncode != 0, proc.stdout[-2000:]
    else:
        assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- results of runs -------------------------------------------------------------------------------------------


def mean_row(csv_path: Path) -> dict[str, float]:
    """Return the 'mean' row of a metrics.csv as column -> value."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["image"] == "mean"
    return {k: float(v) for k, v in rows[-1].items() if k != "image"}


def bandwise(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Return (band-wise PSNR, SSIM) computed here with scikit-image, channel by channel."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = np.mean([peak_signal_noise_ratio(gt[..., c], pred[..., c], data_range=255) for c in range(3)])
    ssim = np.mean([structural_similarity(gt[..., c], pred[..., c], data_range=255) for c in range(3)])
    return float(psnr), float(ssim)


def loss_rows(folder: Path) -> list[str]:
    """Return the loss lines of loss_log.txt without their timing columns (time, data)."""
    lines = (folder / "loss_log.txt").read_text().splitlines()
    return [re.sub(r", time: [0-9.]+, data: [0-9.]+", "", line) for line in lines if line.startswith("(epoch: ")]


def val_rows(folder: Path) -> list[list[str]]:
    """Return val_log.csv's header and rows without the timing column (seconds)."""
    with open(folder / "val_log.csv", newline="") as f:
        rows = list(csv.reader(f))
    skip = rows[0].index("seconds")
    return [row[:skip] + row[skip + 1:] for row in rows]


def training_state(folder: Path, prefix: str = "latest") -> dict:
    """Return a saved training state."""
    return torch.load(folder / f"{prefix}_train_state.pth", weights_only=True)


# ----- exact-resume runs (tests/training/test_resume.py, tests/training/test_trackers.py) -----------------------------

# Every run trains 2 epochs of 12 samples (batch 2, so 6 steps an epoch) at 32x32 on the CPU, with real pairs and
# mixtures, a decaying learning rate, validation after each epoch, loss lines every 4 samples and 'latest' every 4
# samples.
RESUME_FLAGS = ["--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random", "--ngf", "8",
                "--ndf", "8", "--load_size", "36", "--crop_size", "32", "--batch_size", "2", "--dataset_size", "12",
                "--niter", "1", "--niter_decay", "1", "--print_freq", "4", "--save_latest_freq", "4",
                "--display_freq", "4", "--update_html_freq", "8", "--save_epoch_freq", "1", "--natural_prob", "0.5"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

# train.py with an optimiser-step hook that sends SIGTERM to its own process during the N-th optimiser step
# (G and D step in turn, so an even N is a D step: G already updated, D not yet) of rank STOP_RANK.
STOP_IN_STEP = """
import os, runpy, signal, sys
from torch.optim.optimizer import register_optimizer_step_pre_hook

calls = 0


def stop_during_step(optimizer, args, kwargs):
    global calls
    calls += 1
    if calls == int(os.environ["STOP_AT_CALL"]) and os.environ.get("RANK", "0") == os.environ["STOP_RANK"]:
        os.kill(os.getpid(), signal.SIGTERM)


register_optimizer_step_pre_hook(stop_during_step)
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Runs:
    """Training runs of one dataset, each in checkpoints/<name> under a base folder."""

    def __init__(self, base: Path):
        self.base = base
        self.root = build_tiny_dataset(base / "data", n_train=4, n_test=2, natural=2)
        self.ckpt = base / "checkpoints"
        self.hook = base / "stop_in_step.py"
        self.hook.write_text(STOP_IN_STEP)

    def command(self, name: str, *args: str, stop_at_call: int = 0, torchrun: bool = False) -> list[str]:
        """Return the command line of a run (train.py, under the stopping hook when stop_at_call > 0)."""
        launcher = TORCHRUN if torchrun else [sys.executable]
        script = [str(self.hook), str(REPO_ROOT / "train.py")] if stop_at_call else [str(REPO_ROOT / "train.py")]
        return [*launcher, *script, "--dataroot", str(self.root), "--val_dataroot", str(self.root), "--name", name,
                "--checkpoints_dir", str(self.ckpt), *RESUME_FLAGS, *args]

    def train(self, name: str, *args: str, stop_at_call: int = 0, stop_rank: int = 0, torchrun: bool = False,
              expect: int = 0) -> str:
        """Run to the end (or to the hook's stop) and return stdout, asserting the exit status."""
        env = script_env(STOP_AT_CALL=str(stop_at_call), STOP_RANK=str(stop_rank))
        proc = subprocess.run(self.command(name, *args, stop_at_call=stop_at_call, torchrun=torchrun), cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Traceback" not in proc.stdout + proc.stderr or torchrun, proc.stderr[-3000:]
        return proc.stdout

    def folder(self, name: str) -> Path:
        """Return checkpoints/<name>."""
        return self.ckpt / name


# ----- the faster paths against the plain computation (tests/models/test_speed_options.py, tests/test_cuda.py) --------

PLAIN = {"fused_gates": False, "skip_zero_state": False, "skip_unused_heads": False, "inplace_relu": False}
FAST = {"fused_gates": True, "skip_zero_state": True, "skip_unused_heads": True, "inplace_relu": True}
REL = 1e-5  # the stated tolerance: max |fast - plain| <= REL * max |plain|, per tensor (fp32 rounding is ~1e-7)
# bf16 keeps 8 bits of mantissa: unlike the shortcuts above it changes results, by the tolerances stated here
# for tests/fixtures' weights (O(1) activations, harsher than trained ones: the README gives trained figures).
BF16_TEST_MAX, BF16_TEST_MEAN = 0.06, 0.006  # |bf16 - fp32| of the clamped test outputs T_1..3, R_1..3
BF16_LOSS_REL, BF16_GRAD_COSINE = 0.05, 0.99  # per loss term; per parameter gradient
# fp16 (CUDA only) keeps 11 bits of mantissa, 8x finer than bf16: rounding every activation and weight to fp16
# moves these outputs by at most 0.0066 (mean 0.0004) on the CPU (tests/models/test_speed_options.py); its tolerance
# leaves 2x for the GPU's own kernels, a quarter of bf16's.
FP16_TEST_MAX, FP16_TEST_MEAN = 0.015, 0.001


def assert_near(got: torch.Tensor, ref: torch.Tensor, rel: float = REL, what: str = "") -> None:
    """Assert that got equals ref up to rel times ref's largest magnitude (the scale of fp32 rounding there)."""
    assert got.shape == ref.shape, what
    err, scale = float((got - ref).abs().max()), float(ref.abs().max())
    assert err <= rel * scale + 1e-12, f"{what}: max |difference| {err:.3g} > {rel:g} x {scale:.3g}"


def generator_from(state: dict, **config) -> torch.nn.Module:
    """Return a ConvLSTMGenerator holding state, in eval mode, with the shortcuts of config (PLAIN, FAST, ...)."""
    from models.networks import ConvLSTMGenerator

    net = ConvLSTMGenerator()
    net.load_state_dict(state)
    return net.eval().configure(**config)


def mixture_batch() -> dict:
    """Return a training batch of two 32x32 mixtures I = 0.8 T + 0.3 R of random images (seed 11), both synthetic."""
    gen = torch.Generator().manual_seed(11)
    t, r = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    resize = torch.nn.functional.interpolate
    return {"I": (0.8 * t + 0.3 * r).clamp(0, 1), "T": t,
            "T2": resize(t, scale_factor=0.5, mode="bilinear", antialias=True),
            "T4": resize(t, scale_factor=0.25, mode="bilinear", antialias=True),
            "alpha": torch.tensor([0.7, 0.9]), "isNatural": torch.tensor([False, False])}


def brightened_batch(size: int = 32) -> dict:
    """Return a training batch of two size x size random images T (seed 1) with I = 0.7 T + 0.2, the first
    synthetic, the second a real pair."""
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(2, 3, size, size, generator=gen)
    resize = torch.nn.functional.interpolate
    return {"I": (0.7 * t + 0.2).clamp(0, 1), "T": t, "T2": resize(t, scale_factor=0.5),
            "T4": resize(t, scale_factor=0.25), "alpha": torch.tensor([0.7, 0.9]),
            "isNatural": torch.tensor([False, True])}
