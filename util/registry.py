"""Finding a class by name in a package folder: the rule behind --model and --dataset_mode."""

from __future__ import annotations

import importlib
import os

from util.errors import UserError


def available(package: str, kind: str) -> list[str]:
    """Return the names NAME of the files <package>/NAME_<kind>.py, except base_<kind>.py."""
    folder = os.path.dirname(importlib.import_module(package).__file__)
    suffix = f"_{kind}.py"
    return sorted(f[: -len(suffix)] for f in os.listdir(folder) if f.endswith(suffix) and f != f"base{suffix}")


def find_class(package: str, kind: str, name: str, base: type, flag: str) -> type:
    """Return the subclass of base in <package>/<name>_<kind>.py whose lower-cased name is <name without _><kind>."""
    key = name.lower()
    names = available(package, kind)
    if key not in names:
        raise UserError(f"{flag} {name}: no such {kind}; available: {', '.join(names)}")
    module = importlib.import_module(f"{package}.{key}_{kind}")
    target = key.replace("_", "") + kind
    for cls_name, cls in vars(module).items():
        if cls_name.lower() == target and isinstance(cls, type) and issubclass(cls, base):
            return cls
    raise UserError(f"{package}/{key}_{kind}.py defines no {base.__name__} subclass named {target} (case-insensitive)")
