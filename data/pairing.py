"""Pairing files by name, the one rule behind test pairs, real training pairs and saved predictions.

A file's name is its path without extension (its stem, or its path under a folder read recursively), so
that x.png pairs with x.jpg. Two files with one name in a folder are an error: results are named by it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from util.errors import UserError

SHOWN = 5  # names shown in a message listing many


def stem(path: str) -> str:
    """Return the file name of path without folder and extension."""
    return os.path.splitext(os.path.basename(path))[0]


def few(names: Iterable[str], shown: int = SHOWN) -> str:
    """Return the first `shown` names joined by commas, with '(+N more)' for the rest."""
    names = list(names)
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def index_by_name(paths: Iterable[str], folder: str, name: Callable[[str], str] = stem,
                  why: str = "test images are paired and their results named by it") -> dict[str, str]:
    """Return name -> path for paths; two paths with one name are a UserError naming both and the folder."""
    named: dict[str, str] = {}
    for path in paths:
        key = name(path)
        if key in named:
            raise UserError(f"{folder}: {os.path.basename(named[key])} and {os.path.basename(path)} share the name "
                            f"'{key}'; {why}: rename one")
        named[key] = path
    return named


def pair_by_name(left: dict[str, str], right: dict[str, str]) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """Return ((name, left path, right path or None) for each left name in name order, the right names unpaired)."""
    pairs = [(key, left[key], right.get(key)) for key in sorted(left)]
    return pairs, sorted(set(right) - set(left))
