"""train.sh and test.sh, the authors' commands: extra arguments reach train.py and test.py after the authors' flags,
so that the last value of a flag wins (`bash test.sh --gpu_ids -1` tests on the CPU)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, TEST_THREADS, build_tiny_dataset

from options.test_options import TestOptions
from options.train_options import TrainOptions

SCRIPTS = {"train.sh": TrainOptions, "test.sh": TestOptions}


def command_with(script: str, extra: list[str]) -> list[str]:
    """Return the arguments the script's python command line gives its driver when the script gets extra: its words
    as bash splits them, "$@" replaced by extra."""
    lines = [line for line in (REPO_ROOT / script).read_text().splitlines() if line.startswith("python ")]
    assert len(lines) == 1, f"{script}: expected one python command line"
    words = shlex.split(lines[0])
    assert words[-1] == "$@" and "$@" not in words[:-1], f'{script}: "$@" must end the command line'
    return [*words[2:-1], *extra]


@pytest.mark.parametrize("script", SCRIPTS)
def test_extra_arguments_come_last_and_win(script, tmp_path, kernel_flags):
    options = SCRIPTS[script]
    extra = ["--gpu_ids", "-1", "--name", "mine", "--checkpoints_dir", str(tmp_path / "ck")]
    if not options.is_train:
        extra += ["--results_dir", str(tmp_path / "results")]
    opt = options().parse(command_with(script, extra), save=False)  # the authors' --gpu_ids 0, then ours
    assert (opt.gpu_ids, opt.name, opt.dataroot, opt.model) == ([], "mine", "datasets/reflection", "IBCLN")
    assert opt.no_flip and opt.dataset_mode == "resize_natural_3"


@pytest.mark.slow
def test_bash_test_sh_runs_on_the_cpu_with_extra_arguments(seeded_weights, tmp_path):
    """The real script under bash: `bash test.sh --gpu_ids -1 ...` tests seeded weights on a tiny set on the CPU."""
    data = build_tiny_dataset(tmp_path / "data", n_train=0, n_reflection=0, n_test=2)
    checkpoints = tmp_path / "ck"
    (checkpoints / "IBCLN").mkdir(parents=True)
    for net in ("G_T", "G_R"):
        os.link(seeded_weights / f"final_net_{net}.pth", checkpoints / "IBCLN" / f"final_net_{net}.pth")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": TEST_THREADS, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", "test.sh", "--gpu_ids", "-1", "--dataroot", str(data), "--checkpoints_dir",
                           str(checkpoints), "--results_dir", str(tmp_path / "results"), "--ngf", "8"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "results" / "IBCLN" / "test_final" / "metrics.csv").is_file()
