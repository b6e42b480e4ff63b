"""Model registry: ``--model NAME`` loads models/<name>_model.py and its class <Name>Model (case-insensitive).

To add a model ``foo``, create models/foo_model.py with a BaseModel subclass called FooModel and its config
class (a ModelConfig subclass, models/config.py) as FooModel.config_class. options/model_config.py builds a
model from the command line; Python code builds one from keywords, e.g. ``IBCLNModel(IBCLNConfig(ngf=64))``.
``load_ibcln`` (models/api.py) is the Python API for inference with IBCLN.
"""

from __future__ import annotations

from util.registry import find_class

from .api import ReflectionRemover, load_ibcln
from .base_model import BaseModel
from .config import IBCLNConfig, ModelConfig
from .ibcln_model import IBCLNModel

__all__ = ["BaseModel", "IBCLNConfig", "IBCLNModel", "ModelConfig", "ReflectionRemover", "find_model_using_name",
           "get_option_setter", "load_ibcln"]


def find_model_using_name(model_name: str) -> type[BaseModel]:
    """Return the BaseModel subclass registered under ``model_name``."""
    return find_class("models", "model", model_name, BaseModel, "--model")


def get_option_setter(model_name: str):
    """Return the model class's ``modify_commandline_options``."""
    return find_model_using_name(model_name).modify_commandline_options
