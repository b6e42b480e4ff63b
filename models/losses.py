"""IBCLN's loss terms (docs/method.md §4) as pure functions of tensors, so each can be checked by hand.

``synthetic`` is a boolean mask of shape (N,): the residual and R terms only hold for mixtures made
by our synthesis (I_lin = R_lin + alpha * T_lin), so they average over the synthetic samples of the
batch only (the released code took that decision once per batch, from its first sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAMMA = 2.2
RESIDUAL_WEIGHT = 10.0
REFLECTION_WEIGHT = 10.0
ADV_WEIGHT = 0.01
MP_SCALE_WEIGHTS = (1.0, 0.8, 0.6)
VGG_LAYER_WEIGHTS = (1 / 2.6, 1 / 4.8)


def pixel_loss(fake_Ts: Sequence[Tensor], real_T: Tensor) -> Tensor:
    """Return L_T = sum over the cascade steps of MSE(T_k, T)."""
    return sum(F.mse_loss(t, real_T) for t in fake_Ts)


def masked_mse(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Return the MSE of x and y over the samples where mask (N,) is true; 0 when none is.

    Computed on the device without reading the mask back (a boolean index would wait for the GPU).
    """
    per_sample = (x - y).pow(2).flatten(1).mean(1)
    weights = mask.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp_min(1)


def _per_sample(alpha: Tensor, like: Tensor) -> Tensor:
    return alpha.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def residual_loss(real_I: Tensor, fake_Ts: Sequence[Tensor], fake_Rs: Sequence[Tensor], alpha: Tensor,
                  synthetic: Tensor) -> Tensor:
    """Return L_res = sum_k 10 * MSE(I^g, a*T_k^g + R_k^g) over synthetic samples (g = 2.2)."""
    a = _per_sample(alpha, real_I)
    target = real_I.pow(GAMMA)
    return sum(RESIDUAL_WEIGHT * masked_mse(target, a * t.pow(GAMMA) + r.pow(GAMMA), synthetic)
               for t, r in zip(fake_Ts, fake_Rs))


def reflection_loss(real_I: Tensor, real_T: Tensor, fake_Rs: Sequence[Tensor], alpha: Tensor,
                    synthetic: Tensor) -> Tensor:
    """Return L_R = sum_k 10 * MSE(R_k^g + a*T^g, I^g) over synthetic samples (g = 2.2)."""
    a = _per_sample(alpha, real_I)
    target = real_I.pow(GAMMA)
    t_lin = a * real_T.pow(GAMMA)
    return sum(REFLECTION_WEIGHT * masked_mse(r.pow(GAMMA) + t_lin, target, synthetic) for r in fake_Rs)


def perceptual_loss(features: Callable[[Tensor], list[Tensor]], x: Tensor, y: Tensor,
                    weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> Tensor:
    """Return sum_j w_j * L1(phi_j(x), phi_j(y)); y's features are taken without gradient."""
    with torch.no_grad():
        target = features(y)
    return sum(w * F.l1_loss(fx, fy) for w, fx, fy in zip(weights, features(x), target))


def multiscale_perceptual_loss(features: Callable[[Tensor], list[Tensor]], preds: Sequence[Tensor],
                               targets: Sequence[Tensor], scales: Sequence[float] = MP_SCALE_WEIGHTS) -> Tensor:
    """Return L_MP = P(T3, T) + 0.8 P(T3_half, T_half) + 0.6 P(T3_quarter, T_quarter)."""
    return sum(s * perceptual_loss(features, p, t) for s, p, t in zip(scales, preds, targets))


class GANLoss(nn.Module):
    """The GAN objective against a constant target: least squares (lsgan, as released) or BCE (vanilla)."""

    def __init__(self, gan_mode: str = "lsgan"):
        super().__init__()
        if gan_mode == "lsgan":
            self.loss: Callable[[Tensor, Tensor], Tensor] = F.mse_loss
        elif gan_mode == "vanilla":
            self.loss = F.binary_cross_entropy_with_logits
        else:
            raise ValueError(f"--gan_mode {gan_mode}: expected lsgan or vanilla")

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        """Return the loss of the discriminator's prediction against all-ones (real) or all-zeros (fake)."""
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)
