"""Every random stream of a run seeded, saved and restored in one place (python, numpy, torch, CUDA), and
the counter-based generators of the data (a generator that is a pure function of a few numbers)."""

from __future__ import annotations

import random
import secrets
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch with seed + rank (torchrun ranks draw different dropout masks); return None."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def draw_seed() -> int:
    """Return a seed drawn from the operating system's entropy (63 bits), for a run started without --seed."""
    return secrets.randbits(63)


def derived_seed(*numbers: int) -> int:
    """Return a 63-bit seed that is a pure function of the given integers (numpy's SeedSequence mixing).

    Nearby inputs (epoch 3 vs 4, position 10 vs 11) give unrelated seeds; negative numbers are taken
    modulo 2**64.
    """
    words = np.random.SeedSequence([n % 2**64 for n in numbers]).generate_state(1, np.uint64)
    return int(words[0]) >> 1


def generator(*numbers: int) -> torch.Generator:
    """Return a new CPU torch.Generator seeded with derived_seed(*numbers)."""
    return torch.Generator().manual_seed(derived_seed(*numbers))


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


def restore_rng_states(state: dict[str, Any]) -> str | None:
    """Restore the generators saved by rng_states; return a one-line note when not all CUDA states fit, else None.

    A state saved with more visible GPUs than there are now (saved on 2, resumed under a scheduler that
    gives 1) restores the first ones, one per visible device; the note says how many were left out.
    """
    random.setstate(_as_tuple(state["rng_python"]))
    name, keys, *rest = state["rng_numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["rng_torch"])
    saved = list(state["rng_cuda"]) if torch.cuda.is_available() else []
    visible = torch.cuda.device_count() if saved else 0
    for device, cuda_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(cuda_state, device)
    if len(saved) > visible:
        return (f"note: the training state holds CUDA random states for {len(saved)} GPUs and {visible} are visible: "
                f"restored those of GPUs 0..{visible - 1}")
    return None


def reseed_from_current(rank: int) -> None:
    """Reseed python, numpy and torch from a number drawn from torch's current state plus rank; return None.

    For a torchrun rank > 0 resumed from a training state that holds no random state of its own (saved by
    an older version, or by a run with another number of processes): it then draws other samples than
    rank 0, reproducibly.
    """
    seed_everything(int(torch.randint(0, 2**62, (1,)).item()), rank)


def _as_tuple(value: Any) -> Any:
    """Return value with lists turned back into tuples (random.setstate wants the exact nesting)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
