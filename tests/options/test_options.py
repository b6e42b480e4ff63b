"""Tests for options/: the commands and defaults of docs/method.md §7, the option file, --model lookup, GPU errors."""

from __future__ import annotations

import shlex

import pytest
from helpers import parse_options

from models import find_model_using_name
from models.ibcln_model import IBCLNModel
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.devices import parse_gpu_ids
from util.errors import UserError

# docs/method.md §7, verbatim.
TRAIN_COMMAND = ("python train.py --dataroot datasets/reflection --name IBCLN --model IBCLN "
                 "--dataset_mode resize_natural_3 --no_flip --gpu_ids 0 --display_id -1")
TEST_COMMAND = ("python test.py --dataroot datasets/reflection --name IBCLN --model IBCLN "
                "--dataset_mode resize_natural_3 --preprocess \"\" --no_flip --epoch final --gpu_ids 0")


def _args(command: str, tmp_path, cpu: bool) -> list[str]:
    args = shlex.split(command)[2:]  # drop "python train.py"
    if cpu:
        args[args.index("--gpu_ids") + 1] = "-1"
    return [*args, "--checkpoints_dir", str(tmp_path / "checkpoints")]


@pytest.mark.parametrize(("command", "options"), [(TRAIN_COMMAND, TrainOptions), (TEST_COMMAND, TestOptions)])
def test_spec_commands_on_a_cpu_machine_suggest_gpu_ids_minus_1(tmp_path, cpu_only, command, options):
    with pytest.raises(UserError, match="--gpu_ids -1"):
        options().parse(_args(command, tmp_path, cpu=False), save=False)


def test_spec_train_command_parses_with_cpu(tmp_path):
    opt = TrainOptions().parse(_args(TRAIN_COMMAND, tmp_path, cpu=True), save=False)
    assert opt.model == "IBCLN" and opt.name == "IBCLN"
    assert opt.dataset_mode == "resize_natural_3"
    assert opt.no_flip is True and opt.display_id == -1
    assert opt.gpu_ids == [] and opt.is_train is True and opt.phase == "train"
    assert opt.vgg_weights == "imagenet"  # IBCLN's own flag was added by the model


def test_spec_test_command_parses_with_cpu(tmp_path):
    opt = TestOptions().parse(_args(TEST_COMMAND, tmp_path, cpu=True), save=False)
    assert opt.model == "IBCLN" and opt.dataset_mode == "resize_natural_3"
    assert opt.no_flip is True and opt.preprocess == ""
    assert opt.epoch == "final" and opt.phase == "test" and opt.is_train is False
    assert opt.gpu_ids == [] and opt.batch_size == 1 and opt.serial_batches is True


def test_train_defaults_match_spec(tmp_path):
    opt = TrainOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "-1"], save=False)
    expected = {
        "ngf": 64, "ndf": 64, "netG": "gen_drop", "netD": "basic", "norm": "instance", "init_type": "normal",
        "init_gain": 0.02, "batch_size": 2, "load_size": 256, "crop_size": 256, "lr": 0.0002, "beta1": 0.5,
        "niter": 80, "niter_decay": 0, "gan_mode": "lsgan", "lr_policy": "linear", "dataset_size": 4000,
        "display_freq": 400, "print_freq": 100, "save_latest_freq": 5000, "save_epoch_freq": 5,
        "display_winsize": 256, "sigma_min": 2, "sigma_max": 5, "dataset_mode": "resize_natural_3",
        "epoch_count": 1, "input_nc": 3, "output_nc": 3,
    }
    actual = {key: getattr(opt, key) for key in expected}
    assert actual == expected


def test_gpu_ids_parsing(cpu_only):
    assert parse_gpu_ids("-1") == []
    assert parse_gpu_ids("") == []
    with pytest.raises(UserError, match="--gpu_ids -1"):
        parse_gpu_ids("0")
    with pytest.raises(UserError, match="integers"):
        parse_gpu_ids("gpu0")


def test_options_file_marks_non_defaults(tmp_path):
    checkpoints = tmp_path / "ck"
    TrainOptions().parse(["--dataroot", str(tmp_path), "--name", "exp", "--gpu_ids", "-1", "--niter", "3",
                          "--checkpoints_dir", str(checkpoints)])
    text = (checkpoints / "exp" / "train_opt.txt").read_text()
    lines = {line.split(":", 1)[0].strip(): line for line in text.splitlines() if ":" in line}
    assert "[default: 80]" in lines["niter"] and lines["niter"].split(":", 1)[1].split()[0] == "3"
    assert "[default" not in lines["ngf"] and lines["ngf"].split(":", 1)[1].split()[0] == "64"
    assert "[default" in lines["name"]
    assert "sigma_min" in lines and "vgg_weights" in lines  # dataset and model flags are saved too
    TestOptions().parse(["--dataroot", str(tmp_path), "--name", "exp", "--gpu_ids", "-1",
                         "--checkpoints_dir", str(checkpoints), "--results_dir", str(tmp_path / "r")])
    # test options go with the results: checkpoints may be shared and read-only
    assert (tmp_path / "r" / "exp" / "test_latest" / "test_opt.txt").is_file()
    assert not (checkpoints / "exp" / "test_opt.txt").exists()
    assert "[default: 80]" in (checkpoints / "exp" / "train_opt.txt").read_text()  # not overwritten by test


@pytest.mark.parametrize("name", ["IBCLN", "ibcln", "IbClN"])
def test_model_name_is_case_insensitive(tmp_path, name):
    assert find_model_using_name(name) is IBCLNModel
    opt = TrainOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "-1", "--model", name], save=False)
    assert hasattr(opt, "vgg_weights")


def test_unknown_model_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        TrainOptions().parse(["--dataroot", str(tmp_path), "--gpu_ids", "-1", "--model", "pix2pix"], save=False)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--model pix2pix: no such model" in err and "ibcln" in err
    assert "Traceback" not in err
    with pytest.raises(UserError, match="no such model"):
        find_model_using_name("cycle_gan")


@pytest.mark.parametrize("flag", ["--aspect_ratio", "--display_ncols"])
def test_ignored_options_are_gone(tmp_path, flag):
    phase = "test" if flag == "--aspect_ratio" else "train"
    with pytest.raises(SystemExit):
        parse_options(phase, ["--dataroot", tmp_path, "--gpu_ids", "-1", flag, "2"])


@pytest.mark.slow
def test_test_py_on_a_gpu_less_machine_exits_with_one_line(tmp_path, script_runner, test_data):
    args = shlex.split(TEST_COMMAND)[2:]
    args[args.index("--dataroot") + 1] = str(test_data / "reference_data")
    proc = script_runner("test.py", *args, "--checkpoints_dir", str(tmp_path / "ck"),
                         "--results_dir", str(tmp_path / "res"), cuda_visible=False, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, proc.stderr
    assert error_lines[0].startswith("error: ") and "--gpu_ids -1" in error_lines[0]
    assert not (tmp_path / "res").exists()
