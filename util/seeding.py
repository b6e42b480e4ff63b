"""Every random stream of a run seeded, saved and restored in one place (python, numpy, torch, CUDA)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch with seed + rank (torchrun ranks draw different samples; the data workers
    derive their seeds from torch's)."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def rng_states() -> dict[str, Any]:
    """Return the states of python's, numpy's, torch's and CUDA's generators, in a form weights_only loading reads."""
    np_state = np.random.get_state()
    return {
        "rng_python": random.getstate(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
        "rng_numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(state: dict[str, Any], rank: int = 0) -> None:
    """Restore the generators saved by rng_states; a torchrun rank > 0 then reseeds from them and its rank.

    Only rank 0 saves a training state, so after a resume every process holds rank 0's random state and
    would draw the same reflections, crops and dropout masks. Rank 0 keeps the restored state (a
    single-process resume stays exact); every other rank reseeds from a number drawn from that state plus
    its rank: reproducible, and different on each rank.
    """
    random.setstate(_as_tuple(state["rng_python"]))
    name, keys, *rest = state["rng_numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["rng_torch"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    if rank > 0:
        seed_everything(int(torch.randint(0, 2**62, (1,)).item()), rank)


def _as_tuple(value: Any) -> Any:
    """Return value with lists turned back into tuples (random.setstate wants the exact nesting)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
