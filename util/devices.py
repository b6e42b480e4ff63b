"""The devices a user names: --gpu_ids of train.py / test.py and --device (device=) of the Python API, checked
against the GPUs torch sees, with one-line errors that say what to pass instead."""

from __future__ import annotations

import torch

from util.errors import UserError


def check_gpus(ids: list[int], words: str, cpu_hint: str) -> None:
    """Raise a UserError naming `words` (the user's flag and value) unless every GPU index in ids exists here.

    cpu_hint is the flag and value that run on the CPU instead (--gpu_ids -1, --device cpu).
    """
    if not ids:
        return
    if not torch.cuda.is_available():
        raise UserError(f"{words}: CUDA is not available on this machine; use {cpu_hint} to run on the CPU")
    count = torch.cuda.device_count()
    if any(i >= count for i in ids):
        raise UserError(f"{words}: this machine has {count} GPU(s) (ids 0..{count - 1}); choose existing ids or "
                        f"use {cpu_hint} to run on the CPU")


def parse_gpu_ids(text: str) -> list[int]:
    """Return the GPU ids named by ``--gpu_ids`` (empty for the CPU), checking that they exist."""
    try:
        ids = [int(part) for part in str(text).split(",") if part.strip() != ""]
    except ValueError:
        raise UserError(f"--gpu_ids {text}: expected comma-separated integers (0 or 0,1), or -1 for the CPU") from None
    ids = [i for i in ids if i >= 0]
    check_gpus(ids, f"--gpu_ids {text}", "--gpu_ids -1")
    return ids


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for 'auto' (the first GPU when torch sees one, else the CPU), 'cpu' or 'cuda[:N]'."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise UserError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    index = 0 if resolved.index is None else resolved.index
    check_gpus([index], f"--device {device}", "--device cpu")
    return torch.device("cuda", index)
