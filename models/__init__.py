"""Model registry: ``--model NAME`` loads models/<name>_model.py and its class <Name>Model (case-insensitive).

To add a model ``foo``, create models/foo_model.py with a BaseModel subclass called FooModel.
"""

from __future__ import annotations

import argparse
import importlib
import os

from util.errors import UserError

from .base_model import BaseModel


def _available() -> list[str]:
    here = os.path.dirname(__file__)
    return sorted(f[: -len("_model.py")] for f in os.listdir(here) if f.endswith("_model.py") and f != "base_model.py")


def find_model_using_name(model_name: str) -> type[BaseModel]:
    """Return the BaseModel subclass registered under ``model_name``."""
    name = model_name.lower()
    if name not in _available():
        raise UserError(f"--model {model_name}: no such model; available: {', '.join(_available())}")
    module = importlib.import_module(f"models.{name}_model")
    target = name.replace("_", "") + "model"
    for cls_name, cls in vars(module).items():
        if cls_name.lower() == target and isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls
    raise UserError(f"models/{name}_model.py defines no BaseModel subclass named {target} (case-insensitive)")


def get_option_setter(model_name: str):
    """Return the model class's ``modify_commandline_options``."""
    return find_model_using_name(model_name).modify_commandline_options


def create_model(opt: argparse.Namespace) -> BaseModel:
    """Return an instance of the model named by ``opt.model``."""
    model = find_model_using_name(opt.model)(opt)
    print(f"model [{type(model).__name__}] was created")
    return model
