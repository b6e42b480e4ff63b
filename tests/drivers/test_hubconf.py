"""hubconf.py: torch.hub.load(REPO, "ibcln", source="local", weights=DIR) returns the Python API's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, skimage_photo

from models import ReflectionRemover, load_ibcln
from util.errors import UserError


def test_torch_hub_local_load_returns_the_api_model(seeded_weights):
    model = torch.hub.load(str(REPO_ROOT), "ibcln", source="local", weights=str(seeded_weights), device="cpu")
    assert isinstance(model, ReflectionRemover) and model.ngf == 8
    assert all(not net.training for net in model.model.nets().values())
    photo = skimage_photo("coffee", (30, 42))
    t, r = model.remove_reflection(photo)
    expected_t, expected_r = load_ibcln(str(seeded_weights), device="cpu").remove_reflection(photo)
    assert np.array_equal(t, expected_t) and np.array_equal(r, expected_r) and t.shape == photo.shape


def test_hub_load_passes_errors_through(tmp_path):
    with pytest.raises(UserError, match="final_net_G_T.pth"):
        torch.hub.load(str(REPO_ROOT), "ibcln", source="local", weights=str(tmp_path))
