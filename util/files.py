"""Files that are never left half-written, and checkpoints loaded without running code."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import torch

from util.errors import UserError


def atomic_write(path: str, write: Callable[[BinaryIO], None], sync: bool = True) -> None:
    """Call write(file) so that path holds either the old file or the complete new one, never a torso.

    Writes to a temporary file in the same folder, flushes it to disk (sync: also through the OS cache,
    against power loss), then renames it over path. A
    failure of the disk (full, read-only, no permission) is a one-line UserError naming path.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=folder)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        # torch.save reports a short write of its zip writer as a RuntimeError from inline_container.cc.
        if isinstance(err, OSError) or (isinstance(err, RuntimeError) and "inline_container" in str(err)):
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
            raise UserError(f"{path}: cannot be saved ({reason}); the previous file, if any, is "
                            "unchanged") from None
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """Save obj with torch.save atomically (see atomic_write): a failed save never leaves a truncated file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_torch_load(path: str, map_location: Any = "cpu") -> Any:
    """Return torch.load(path) with weights_only=True: tensors and plain containers only, no code runs.

    A file that is missing, truncated, not a torch file, or that would need arbitrary unpickling is
    a UserError naming it.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: cannot be loaded safely as a checkpoint (corrupt, truncated, or it holds "
                        f"objects other than tensors, which weights_only loading refuses): {first_line}") from None
