"""Shared fixtures: the repository paths, tiny image folders made from skimage photos, option parsing, scripts."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = REPO_ROOT / "tests" / "data"

# One intra-op thread per process by default (IBCLN_TEST_THREADS overrides): on a small machine shared with
# other jobs, OpenMP threads that spin-wait for each other make the small convolutions of these tests 5-10x
# slower than a single thread. Subprocesses started by run_script get the same setting.
TEST_THREADS = os.environ.get("IBCLN_TEST_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Set torch's thread count for the test session (see TEST_THREADS)."""
    import torch

    torch.set_num_threads(int(TEST_THREADS))

# skimage.data photos that ship with scikit-image (no download): bright enough for the synthesis to accept them.
T_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "coffee")
R_PHOTOS = ("coffee", "chelsea", "astronaut")


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
    """Write an (H, W, 3) uint8 array as a PNG (creating the folder) and return the path."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


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


@pytest.fixture
def tiny_dataset_factory(tmp_path: Path) -> Callable[..., Path]:
    """Return build_tiny_dataset with the root defaulting to a fresh folder under tmp_path."""
    counter = iter(range(10**6))

    def factory(root: Path | None = None, **kwargs) -> Path:
        return build_tiny_dataset(root or tmp_path / f"dataset{next(counter)}", **kwargs)

    return factory


@pytest.fixture
def tiny_dataset(tiny_dataset_factory: Callable[..., Path]) -> Path:
    """Return a fresh dataset folder: 3 trainA1, 2 trainA2 (72x72), 2 testB + testA1 (48x64)."""
    return tiny_dataset_factory()


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch report no CUDA, so that GPU-related behaviour is the CPU machine's wherever tests run."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def kernel_flags() -> Iterator[None]:
    """Restore torch's deterministic mode, cuDNN's benchmark and deterministic flags and TF32 after the test."""
    import torch

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved[2:]


def parse_options(phase: str, args: Sequence[str], save: bool = False) -> argparse.Namespace:
    """Return TrainOptions (phase 'train') or TestOptions (phase 'test') parsed from args."""
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    options = TrainOptions() if phase == "train" else TestOptions()
    return options.parse([str(a) for a in args], save=save)


@pytest.fixture
def make_options(tmp_path: Path) -> Callable[..., argparse.Namespace]:
    """Return f(phase, *args, save=False): CPU options for train/test with checkpoints and results under tmp_path.

    --gpu_ids -1, --checkpoints_dir, --results_dir (test) and, for training, --display_id -1, --vgg_weights
    random and --num_threads 0 are added unless args set them.
    """
    def factory(phase: str, *args: str, save: bool = False) -> argparse.Namespace:
        given = {a for a in args if str(a).startswith("--")}
        extra: list[str] = []
        defaults = {"--gpu_ids": "-1", "--checkpoints_dir": str(tmp_path / "checkpoints"), "--num_threads": "0"}
        if phase == "train":
            defaults.update({"--display_id": "-1", "--vgg_weights": "random"})
        else:
            defaults["--results_dir"] = str(tmp_path / "results")
        for flag, value in defaults.items():
            if flag not in given:
                extra += [flag, value]
        return parse_options(phase, [*args, *extra], save=save)

    return factory


def run_script(script: str, *args: str, timeout: float = 300, cuda_visible: bool = True,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python <script> args` (train.py or test.py) from the repository root; return the completed process.

    stdout and stderr are captured as text. cuda_visible=False hides every GPU (CUDA_VISIBLE_DEVICES="").
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = TEST_THREADS
    if not cuda_visible:
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, str(REPO_ROOT / script), *[str(a) for a in args]]
    return subprocess.run(command, cwd=str(cwd or REPO_ROOT), env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def script_runner() -> Callable[..., subprocess.CompletedProcess]:
    """Return run_script (see there): runs train.py / test.py with sys.executable from the repository root."""
    return run_script


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Return the repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Return tests/data (reference keys, golden arrays, expected PNGs, make_weights.py)."""
    return TEST_DATA


def load_make_weights():
    """Return the tests/data/make_weights.py module (deterministic weights from a key list and a seed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_weights", TEST_DATA / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_weights():
    """Return the tests/data/make_weights.py module (use make_weights.make_state_dict(keys, seed))."""
    return load_make_weights()


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder with final_net_G_T.pth / final_net_G_R.pth: ngf-8 generators from make_weights (seeds 1, 2)."""
    import torch

    from models.networks import ConvLSTMGenerator

    keys = [(key, list(value.shape)) for key, value in ConvLSTMGenerator(ngf=8).state_dict().items()]
    make_weights = load_make_weights()
    folder = tmp_path_factory.mktemp("seeded_weights")
    for net, seed in (("G_T", 1), ("G_R", 2)):
        torch.save(make_weights.make_state_dict(keys, seed), folder / f"final_net_{net}.pth")
    return folder
