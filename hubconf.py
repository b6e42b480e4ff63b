"""torch.hub entry point: torch.hub.load(REPO, "ibcln", weights=DIR) returns models/api.py's ReflectionRemover.

    model = torch.hub.load("path/to/this/repo", "ibcln", source="local", weights="checkpoints/IBCLN")
    T, R = model.remove_reflection(image)
"""

from __future__ import annotations

import os

from models.api import ReflectionRemover, load_ibcln

# Packages torch.hub checks for before importing this file.
dependencies = ["torch", "numpy", "PIL"]


def ibcln(weights: str | None = None, device: str = "auto", epoch: str = "final", **kwargs) -> ReflectionRemover:
    """Return IBCLN with <weights>/<epoch>_net_G_T.pth and _G_R.pth loaded (default: this repo's checkpoints/IBCLN).

    Further keyword arguments (amp, channels_last, tile_overlap, ema) are those of models.api.load_ibcln.
    """
    folder = weights if weights is not None else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "checkpoints", "IBCLN")
    return load_ibcln(folder, device=device, epoch=epoch, **kwargs)
