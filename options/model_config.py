"""The seam between the command line and the model: the options of a run turn into the model's typed config.

    model = create_model(opt)              # train.py, test.py, evaluate.py
    checkpoint.load_for_run(model, opt)    # the networks the run starts from
    model.setup(opt.verbose)

Each model class names its config class (BaseModel.config_class, models/config.py); every field of it takes
the option of the same name, and a field no option sets keeps its default (test.py has no --lr).
"""

from __future__ import annotations

import argparse
import dataclasses

from models import find_model_using_name
from models.base_model import BaseModel
from models.config import ModelConfig


def model_config(opt: argparse.Namespace) -> ModelConfig:
    """Return the config of --model's class, each field taken from the option of the same name where there is one."""
    config_class = find_model_using_name(opt.model).config_class
    values = {field.name: getattr(opt, field.name) for field in dataclasses.fields(config_class)
              if hasattr(opt, field.name)}
    return config_class(**values)


def create_model(opt: argparse.Namespace) -> BaseModel:
    """Return an instance of the model named by ``opt.model``, built from the options' config (not yet set up)."""
    model = find_model_using_name(opt.model)(model_config(opt))
    print(f"model [{type(model).__name__}] was created")
    return model
