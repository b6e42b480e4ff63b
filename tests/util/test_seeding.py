"""Random streams (util/seeding.py): counter-based generators, saved states, CUDA states on fewer GPUs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from util import seeding


def test_derived_seeds_are_pure_and_unrelated_for_nearby_numbers():
    assert seeding.derived_seed(2, 3, 4) == seeding.derived_seed(2, 3, 4)
    seeds = {seeding.derived_seed(2, 3, epoch, position) for epoch in range(5) for position in range(50)}
    assert len(seeds) == 250 and all(0 <= s < 2**63 for s in seeds)
    assert seeding.derived_seed(-1) == seeding.derived_seed(2**64 - 1)  # negatives taken modulo 2**64
    torch.manual_seed(0)
    first = torch.rand(3, generator=seeding.generator(7, 1))
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3, generator=seeding.generator(7, 1)), first)


def test_saved_states_restore_every_stream():
    seeding.seed_everything(11)
    state = seeding.rng_states()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seeding.seed_everything(12)
    assert seeding.restore_rng_states(state) is None
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_cuda_states_of_more_gpus_than_visible_restore_what_fits_with_one_line(monkeypatch: pytest.MonkeyPatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1], dtype=torch.uint8),
                                                                  torch.tensor([2], dtype=torch.uint8)])
    state = seeding.rng_states()  # saved on 2 GPUs
    note = seeding.restore_rng_states(state)  # resumed with 1
    assert [(int(s[0]), device) for s, device in restored] == [(1, 0)]
    assert note is not None and "\n" not in note and "2 GPUs and 1 are visible" in note
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    restored.clear()
    assert seeding.restore_rng_states(state) is None
    assert [device for _, device in restored] == [0, 1]
