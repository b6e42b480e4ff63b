"""models/config.py and options/model_config.py: the model built from keywords, and the options' one way into it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from models import IBCLNConfig, IBCLNModel
from options.model_config import create_model, model_config
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.errors import UserError

# Keyword defaults that differ from the command line's on purpose (models/config.py): the CPU, and NCHW.
NOT_THE_FLAGS_DEFAULT = {"gpu_ids", "channels_last"}


def test_a_model_is_built_from_keywords_in_one_line():
    model = IBCLNModel(IBCLNConfig(ngf=8))
    assert model.device == torch.device("cpu") and model.model_names == ["G_T", "G_R"] and not model.is_train
    assert model.nets()["G_T"].conv1[0].out_channels == 8 and model.channels_last is False


def test_options_and_keywords_build_the_same_model(make_options, tmp_path):
    opt = make_options("test", "--dataroot", str(tmp_path), "--name", "same", "--ngf", "8", "--channels_last", "off")
    torch.manual_seed(0)
    from_options = create_model(opt)
    torch.manual_seed(0)
    from_keywords = IBCLNModel(IBCLNConfig(ngf=8, name="same", checkpoints_dir=opt.checkpoints_dir))
    assert from_options.config == from_keywords.config
    for name, net in from_keywords.nets().items():
        theirs = from_options.nets()[name].state_dict()
        assert all(torch.equal(value, theirs[key]) for key, value in net.state_dict().items()), name


@pytest.mark.parametrize("phase", ["train", "test"])
def test_every_field_takes_the_option_of_its_name(make_options, tmp_path, phase):
    flags = ["--ngf", "16", "--no_dropout", "--init_gain", "0.05", "--amp", "none", "--fused_gates"]
    flags += ["--lr", "0.001", "--niter", "7", "--vgg_weights", "random"] if phase == "train" else ["--tile", "256"]
    opt = make_options(phase, "--dataroot", str(tmp_path), "--name", "fields", *flags)
    config = model_config(opt)
    assert type(config) is IBCLNConfig and config.is_train is (phase == "train")
    for field in dataclasses.fields(config):
        if hasattr(opt, field.name):
            value = getattr(opt, field.name)
            assert getattr(config, field.name) == (tuple(value) if isinstance(value, list) else value), field.name
    assert config.ngf == 16 and config.no_dropout and config.init_gain == 0.05 and config.fused_gates
    if phase == "train":
        assert (config.lr, config.niter, config.tile) == (0.001, 7, 0)  # training has no --tile: the default
    else:
        assert (config.tile, config.lr) == (256, IBCLNConfig.lr)  # test.py has no --lr: the default


@pytest.mark.parametrize("phase", ["train", "test"])
def test_keyword_defaults_are_the_command_lines(tmp_path, phase):
    options = TrainOptions() if phase == "train" else TestOptions()
    opt = options.parse(["--dataroot", str(tmp_path), "--gpu_ids", "-1"], save=False)
    parser_defaults = {field.name: options.parser.get_default(field.name)
                       for field in dataclasses.fields(IBCLNConfig) if hasattr(opt, field.name)}
    different = {name for name, default in parser_defaults.items()
                 if name not in ("is_train", "checkpoints_dir") and default != getattr(IBCLNConfig, name)}
    assert different <= NOT_THE_FLAGS_DEFAULT, different


@pytest.mark.parametrize(("keywords", "message"), [
    ({"ngf": "64"}, r"IBCLNConfig\(ngf='64'\): expected int"),
    ({"no_dropout": 1}, r"no_dropout=1\): expected bool"),
    ({"gpu_ids": (0.5,)}, r"gpu_ids=\(0.5,\)\): expected tuple\[int, ...\]"),
    ({"amp": "fp8"}, r"amp='fp8': expected one of none, auto, bf16, fp16"),
    ({"channels_last": "yes"}, r"channels_last='yes'"),
    ({"tile": 30}, r"--tile 30: expected a positive multiple of 4"),
])
def test_a_wrong_keyword_is_one_line_naming_it(keywords, message):
    with pytest.raises(UserError, match=message):
        IBCLNConfig(**keywords)


def test_lists_become_tuples_and_the_config_is_frozen():
    config = IBCLNConfig(gpu_ids=[1], lr=1)  # an int is a float
    assert config.gpu_ids == (1,) and config.device == torch.device("cuda", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ngf = 32


def test_the_model_takes_a_config_not_an_argparse_namespace():
    with pytest.raises(TypeError, match="IBCLNModel takes a config of type IBCLNConfig, got Namespace"):
        IBCLNModel(argparse.Namespace(ngf=8, gpu_ids=[], is_train=False))
