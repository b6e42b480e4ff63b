"""Tests for models/losses.py: every term against a numpy computation of its formula (docs/method.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.losses import (
    GANLoss,
    masked_mse,
    multiscale_perceptual_loss,
    perceptual_loss,
    pixel_loss,
    reflection_loss,
    residual_loss,
)

G = 2.2


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.float64))


def _known(seed: int, shape: tuple[int, ...], low: float = 0.05, high: float = 0.95) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def test_pixel_loss_is_sum_of_step_mses():
    real_T = np.array([[[[0.0, 0.5], [1.0, 0.25]]] * 3])  # 1x3x2x2
    steps = [real_T + 0.1, real_T - 0.2, real_T * 0.5]
    expected = 0.1**2 + 0.2**2 + np.mean((real_T * 0.5 - real_T) ** 2)
    got = pixel_loss([_tensor(s) for s in steps], _tensor(real_T))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert pixel_loss([_tensor(real_T)] * 3, _tensor(real_T)).item() == 0.0


def test_masked_mse_uses_only_masked_samples():
    x = _known(0, (3, 3, 2, 2))
    y = _known(1, (3, 3, 2, 2))
    mask = np.array([True, False, True])
    expected = np.mean((x[mask] - y[mask]) ** 2)
    got = masked_mse(_tensor(x), _tensor(y), torch.from_numpy(mask))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert got.item() != pytest.approx(np.mean((x - y) ** 2), rel=1e-3)  # the natural sample is not averaged in
    full = masked_mse(_tensor(x), _tensor(y), torch.ones(3, dtype=torch.bool))
    assert full.item() == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)


def test_masked_mse_all_natural_batch_is_zero():
    x = _tensor(_known(2, (2, 3, 2, 2)))
    got = masked_mse(x, x + 1, torch.zeros(2, dtype=torch.bool))
    assert got.shape == () and got.item() == 0.0


def _batch() -> dict[str, np.ndarray]:
    # Three samples of 3x2x2: the middle one is a real pair (not synthetic).
    return {
        "I": _known(10, (3, 3, 2, 2)),
        "T": _known(11, (3, 3, 2, 2)),
        "Ts": np.stack([_known(20 + k, (3, 3, 2, 2)) for k in range(3)]),
        "Rs": np.stack([_known(30 + k, (3, 3, 2, 2), 0.0, 0.4) for k in range(3)]),
        "alpha": np.array([0.8, 0.9, 1.0]),
        "synthetic": np.array([True, False, True]),
    }


def _numpy_residual(b: dict[str, np.ndarray], samples: np.ndarray) -> float:
    total = 0.0
    for t, r in zip(b["Ts"], b["Rs"]):
        err = [(b["I"][n] ** G - (b["alpha"][n] * t[n] ** G + r[n] ** G)) ** 2 for n in samples]
        total += 10 * np.mean(err)
    return total


def _numpy_reflection(b: dict[str, np.ndarray], samples: np.ndarray) -> float:
    total = 0.0
    for r in b["Rs"]:
        err = [(r[n] ** G + b["alpha"][n] * b["T"][n] ** G - b["I"][n] ** G) ** 2 for n in samples]
        total += 10 * np.mean(err)
    return total


def _residual(b: dict[str, np.ndarray]) -> float:
    return residual_loss(_tensor(b["I"]), [_tensor(t) for t in b["Ts"]], [_tensor(r) for r in b["Rs"]],
                         _tensor(b["alpha"]), torch.from_numpy(b["synthetic"])).item()


def _reflection(b: dict[str, np.ndarray]) -> float:
    return reflection_loss(_tensor(b["I"]), _tensor(b["T"]), [_tensor(r) for r in b["Rs"]], _tensor(b["alpha"]),
                           torch.from_numpy(b["synthetic"])).item()


def test_residual_loss_per_sample_alpha_synthetic_only():
    b = _batch()
    got = _residual(b)
    assert got == pytest.approx(_numpy_residual(b, np.array([0, 2])), rel=1e-10)
    assert got != pytest.approx(_numpy_residual(b, np.array([0, 1, 2])), rel=1e-3)
    # Changing the real pair's images does not change the loss.
    b["I"][1], b["Ts"][:, 1], b["Rs"][:, 1] = 0.99, 0.01, 0.3
    assert _residual(b) == pytest.approx(got, rel=1e-12)
    # Each sample uses its own alpha: a common alpha would give another value.
    b["alpha"] = np.array([0.9, 0.9, 0.9])
    assert _residual(b) != pytest.approx(got, rel=1e-3)


def test_reflection_loss_per_sample_alpha_synthetic_only():
    b = _batch()
    got = _reflection(b)
    assert got == pytest.approx(_numpy_reflection(b, np.array([0, 2])), rel=1e-10)
    assert got != pytest.approx(_numpy_reflection(b, np.array([0, 1, 2])), rel=1e-3)
    b["I"][1], b["T"][1], b["Rs"][:, 1] = 0.99, 0.01, 0.3
    assert _reflection(b) == pytest.approx(got, rel=1e-12)
    b["alpha"] = np.array([0.9, 0.9, 0.9])
    assert _reflection(b) != pytest.approx(got, rel=1e-3)


def test_residual_and_reflection_zero_for_all_natural_batch():
    b = _batch()
    b["synthetic"] = np.zeros(3, dtype=bool)
    assert _residual(b) == 0.0
    assert _reflection(b) == 0.0


def test_residual_and_reflection_vanish_for_exact_mixture():
    # I_lin = alpha*T_lin + R_lin exactly: both terms are zero when the steps predict T and R.
    rng = np.random.default_rng(3)
    t, r, alpha = rng.uniform(0.1, 0.7, (2, 3, 2, 2)), rng.uniform(0, 0.3, (2, 3, 2, 2)), np.array([0.85, 0.95])
    i = (alpha[:, None, None, None] * t**G + r**G) ** (1 / G)
    synthetic = torch.ones(2, dtype=torch.bool)
    res = residual_loss(_tensor(i), [_tensor(t)] * 3, [_tensor(r)] * 3, _tensor(alpha), synthetic)
    refl = reflection_loss(_tensor(i), _tensor(t), [_tensor(r)] * 3, _tensor(alpha), synthetic)
    assert res.item() == pytest.approx(0.0, abs=1e-20)
    assert refl.item() == pytest.approx(0.0, abs=1e-20)


def _fake_features(x: torch.Tensor) -> list[torch.Tensor]:
    # Two "layers": a scaled copy and the channel mean.
    return [2.0 * x, x.mean(dim=1, keepdim=True)]


def _numpy_perceptual(x: np.ndarray, y: np.ndarray) -> float:
    f1 = np.mean(np.abs(2 * x - 2 * y))
    f2 = np.mean(np.abs(x.mean(axis=1) - y.mean(axis=1)))
    return f1 / 2.6 + f2 / 4.8


def test_perceptual_loss_weights_layers_and_stops_target_gradient():
    x_np, y_np = _known(40, (2, 3, 2, 2)), _known(41, (2, 3, 2, 2))
    x = _tensor(x_np).requires_grad_(True)
    y = _tensor(y_np).requires_grad_(True)
    got = perceptual_loss(_fake_features, x, y)
    assert got.item() == pytest.approx(_numpy_perceptual(x_np, y_np), rel=1e-12)
    got.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None


def test_multiscale_perceptual_loss_scale_weights():
    preds = [_known(50 + k, (1, 3, 4 >> k, 4 >> k)) for k in range(3)]
    targets = [_known(60 + k, (1, 3, 4 >> k, 4 >> k)) for k in range(3)]
    expected = sum(s * _numpy_perceptual(p, t) for s, p, t in zip((1.0, 0.8, 0.6), preds, targets))
    got = multiscale_perceptual_loss(_fake_features, [_tensor(p) for p in preds], [_tensor(t) for t in targets])
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_gan_loss_lsgan_is_mse_against_ones_and_zeros():
    pred_np = np.array([[[[0.2, -0.5], [1.5, 0.9]]]])
    pred = _tensor(pred_np)
    loss = GANLoss("lsgan")
    assert loss(pred, True).item() == pytest.approx(np.mean((pred_np - 1) ** 2), rel=1e-12)
    assert loss(pred, False).item() == pytest.approx(np.mean(pred_np**2), rel=1e-12)
    assert GANLoss()(pred, True).item() == pytest.approx(np.mean((pred_np - 1) ** 2), rel=1e-12)  # lsgan default


def test_gan_loss_vanilla_and_unknown_mode():
    pred_np = np.array([[[[0.2, -0.5], [1.5, 0.9]]]])
    loss = GANLoss("vanilla")
    assert loss(_tensor(pred_np), True).item() == pytest.approx(np.mean(np.log1p(np.exp(-pred_np))), rel=1e-12)
    assert loss(_tensor(pred_np), False).item() == pytest.approx(np.mean(np.log1p(np.exp(pred_np))), rel=1e-12)
    with pytest.raises(ValueError, match="gan_mode"):
        GANLoss("wgan")
