"""Optional packages (pyproject.toml's extras): a missing one stops with one line naming the package and the command
that installs it, and every extra a message or page names exists."""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import re
import tomllib

import pytest
from helpers import REPO_ROOT, tracked_files

from util.errors import UserError

EXTRAS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def script(name: str):
    """Return a program of scripts/ imported from its file."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def requirement_names(extra: str) -> set[str]:
    """Return the package names an extra installs."""
    return {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0] for requirement in EXTRAS[extra]}


def test_the_extras_install_the_optional_packages():
    assert requirement_names("weights") == {"gdown"}
    assert requirement_names("onnx") == {"onnx", "onnxscript", "onnxruntime"}
    assert requirement_names("tensorboard") == {"tensorboard"} and requirement_names("wandb") == {"wandb"}


def test_get_weights_without_gdown_names_it_and_its_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_gdown(name, *args, **kwargs):
        if name == "gdown":
            raise ImportError("No module named 'gdown'")
        return real_import(name, *args, **kwargs)

    module = script("get_weights")
    monkeypatch.setattr(builtins, "__import__", no_gdown)
    with pytest.raises(UserError) as caught:
        module.download(str(tmp_path))
    message = str(caught.value)
    assert "'gdown'" in message and "pip install gdown" in message and "pip install -e .[weights]" in message
    assert "\n" not in message


@pytest.mark.parametrize("package", ["onnx", "onnxscript", "onnxruntime"])
def test_export_onnx_without_a_package_names_it_and_its_extra(package, monkeypatch):
    module = script("export_onnx")
    real_import = importlib.import_module
    monkeypatch.setattr(module.importlib, "import_module",
                        lambda name, *args: (_ for _ in ()).throw(ImportError(name)) if name == package
                        else real_import(name, *args))
    with pytest.raises(UserError) as caught:
        module.require(package, "ONNX export")
    message = str(caught.value)
    assert f"'{package}'" in message and f"pip install {package}" in message and "pip install -e .[onnx]" in message
    assert package in requirement_names("onnx")


def test_every_extra_named_in_the_repository_exists():
    named = set()
    for name in tracked_files():
        if name.endswith((".py", ".md", ".sh", ".toml", ".txt")) and (REPO_ROOT / name).is_file():
            named |= set(re.findall(r"pip install -e '?\.\[([\w,]+)\]", (REPO_ROOT / name).read_text(errors="replace")))
    named = {extra for group in named for extra in group.split(",")}
    assert named >= {"weights", "onnx", "tensorboard", "wandb"}
    assert named <= set(EXTRAS)
