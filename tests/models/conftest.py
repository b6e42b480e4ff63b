"""Fixtures of the models room's tests."""

from __future__ import annotations

import pytest
import torch

from models.networks import ConvLSTMGenerator, init_weights


@pytest.fixture(scope="module")
def generators() -> tuple[ConvLSTMGenerator, ConvLSTMGenerator]:
    """Return G_T and G_R with the released initialisation (normal, 0.02; torch seeded with 0), in eval mode."""
    torch.manual_seed(0)
    g_t, g_r = ConvLSTMGenerator(), ConvLSTMGenerator()
    init_weights(g_t)
    init_weights(g_r)
    return g_t.eval(), g_r.eval()
