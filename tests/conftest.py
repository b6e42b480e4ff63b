"""Shared fixtures (repository paths, tiny data sets, options, scripts, seeded weights) and the fast tier's guard.

The helpers these build on are in tests/helpers.py; tests/README.md describes the layout and the two tiers.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing.process
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# helpers.py's asserts report their operands, like a test module's.
pytest.register_assert_rewrite("helpers")

from helpers import (  # noqa: E402 (after the rewrite hook)
    FIXTURES,
    REPO_ROOT,
    TEST_THREADS,
    build_tiny_dataset,
    identity_vgg,
    load_make_weights,
    parse_options,
    run_script,
    tracked_files,
)


def pytest_configure(config: pytest.Config) -> None:
    """Set torch's thread count for the test session (helpers.TEST_THREADS)."""
    import torch

    torch.set_num_threads(int(TEST_THREADS))
    tracked_files()  # one `git ls-files` before any test, so that the docs tests of the fast tier start no process


# ----- the fast tier starts no process ----------------------------------------------------------------------------

@contextlib.contextmanager
def no_child_processes(item: pytest.Item) -> Iterator[None]:
    """Make every way of starting a process raise while item (not marked slow) sets up, runs and tears down."""
    def refuse(what: str) -> Callable:
        def start(*args, **kwargs):
            raise RuntimeError(f"{item.nodeid} starts a process ({what}) but is not marked slow: add "
                               "@pytest.mark.slow (tests/README.md), since -m 'not slow' must start none")
        return start

    # Every subprocess (scripts, torchrun, git, browsers, servers) and every multiprocessing process (DataLoader
    # workers, spawned ranks) starts through one of these.
    starters = [(subprocess.Popen, "_execute_child", "subprocess"),
                (multiprocessing.process.BaseProcess, "start", "multiprocessing")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in starters]
    for owner, name, what in starters:
        setattr(owner, name, refuse(what))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def guarded(item: pytest.Item) -> contextlib.AbstractContextManager:
    """Return the guard for a test that is not marked slow, else a context that does nothing."""
    return contextlib.nullcontext() if item.get_closest_marker("slow") else no_child_processes(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Set the test up under the guard (its fixtures may start processes too)."""
    with guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Run the test under the guard."""
    with guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Tear the test down under the guard."""
    with guarded(item):
        return (yield)


# ----- fixtures ---------------------------------------------------------------------------------------------------

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
def no_perceptual_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the models a test builds helpers.identity_vgg instead of a VGG19: for models whose losses never run."""
    from models import networks

    monkeypatch.setattr(networks, "load_vgg_features", identity_vgg)


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


@pytest.fixture
def script_runner() -> Callable[..., subprocess.CompletedProcess]:
    """Return helpers.run_script: runs train.py / test.py / ... with sys.executable from the repository root."""
    return run_script


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Return the repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Return tests/fixtures (reference keys, golden arrays, expected PNGs, make_weights.py)."""
    return FIXTURES


@pytest.fixture(scope="session")
def make_weights():
    """Return the tests/fixtures/make_weights.py module (use make_weights.make_state_dict(keys, seed))."""
    return load_make_weights()


@pytest.fixture(scope="session")
def generator_keys() -> list[list]:
    """Return the released generator's [key, shape] list (tests/fixtures/generator_keys.json)."""
    import json

    return json.loads((FIXTURES / "generator_keys.json").read_text())


@pytest.fixture(scope="session")
def golden_states(make_weights, generator_keys) -> tuple[dict, dict]:
    """Return the (G_T, G_R) state dicts of the golden arrays: make_weights on the released key list (ngf 64),
    seeds 1 and 2."""
    return make_weights.make_state_dict(generator_keys, 1), make_weights.make_state_dict(generator_keys, 2)


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
