"""train.py's flags: test.py's size flags are refused with their --val_* twins named, and saved configs that hold
their defaults still load."""

from __future__ import annotations

import pytest
import yaml

from evaluation.validation import validation_options
from options.test_options import TestOptions
from options.train_options import VAL_TWINS, TrainOptions, run_config
from util.errors import UserError


@pytest.mark.parametrize(("given", "twin"), [
    (["--keep_size"], "--val_keep_size"),
    (["--align", "32"], "--val_align"),
    (["--align=32"], "--val_align"),
    (["--max_size", "512"], "--val_max_size"),
])
def test_train_py_refuses_test_py_s_size_flags_naming_their_twins(given, twin, make_options, kernel_flags):
    with pytest.raises(UserError) as caught:
        make_options("train", "--dataroot", "unused", *given)
    message = str(caught.value)
    assert message.startswith(f"{given[0].split('=')[0]} ") and twin in message and "\n" not in message


def test_test_py_keeps_them(make_options, kernel_flags):
    opt = make_options("test", "--dataroot", "unused", "--keep_size", "--max_size", "512")
    assert (opt.keep_size, opt.max_size, opt.align) == (True, 512, 0)


@pytest.mark.parametrize(("key", "value"), [("keep_size", True), ("align", 32), ("max_size", 64)])
def test_a_training_config_that_sets_one_is_refused_naming_the_file_and_the_twin(key, value, tmp_path, kernel_flags):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"dataroot": "unused", key: value}))
    with pytest.raises(UserError, match=f"^{path}: {key} .*{VAL_TWINS[key]}"):
        TrainOptions().parse(["--config", str(path), "--gpu_ids", "-1"], save=False)


def test_a_config_saved_while_train_py_took_them_still_loads(make_options, tmp_path, kernel_flags):
    """Every config.yaml saved before these flags left train.py holds their defaults: they are passed over."""
    saved = run_config(make_options("train", "--dataroot", "unused", "--seed", "3"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**saved, "keep_size": False, "align": 0, "max_size": 0}))
    opt = make_options("train", "--config", str(path))
    assert opt.seed == 3 and not {"keep_size", "align", "max_size"} & set(vars(opt))


def test_the_saved_config_holds_the_twins_only(make_options, kernel_flags):
    saved = run_config(make_options("train", "--dataroot", "unused", "--val_align", "32"))
    assert not set(VAL_TWINS) & set(saved)
    assert {twin: saved[twin] for twin in VAL_TWINS.values()} == {"val_keep_size": False, "val_align": 32,
                                                                  "val_max_size": 0}


def test_validation_reads_each_twin_as_its_test_flag(make_options, kernel_flags):
    opt = make_options("train", "--dataroot", "unused", "--val_dataroot", "val", "--val_max_size", "96",
                       "--val_align", "32")
    val_opt = validation_options(opt)
    assert (val_opt.keep_size, val_opt.align, val_opt.max_size, val_opt.dataroot) == (False, 32, 96, "val")
    assert set(TestOptions().make_parser("ibcln", "resize_natural_3").parse_args(["--dataroot", "x"]).__dict__) >= \
        set(VAL_TWINS)
