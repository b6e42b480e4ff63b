"""Exponential moving average (EMA) of network weights: the update rule, and the averages of one network.

After every optimiser step, each average moves towards the network's current tensor of the same name:

    average <- decay * average + (1 - decay) * weight

(computed as average + (1 - decay) * (weight - average), torch.lerp, which is the same up to rounding). The
averages start at the weights the run starts from, live in fp32 on the network's device, and cover the whole
state_dict: parameters, and buffers too were there any (IBCLN's generators have none: their only norm layer
is the discriminator's). docs/training.md#ema-of-the-weights says how a run uses them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_step(average: Tensor, weight: Tensor, decay: float, out: Tensor | None = None) -> Tensor:
    """Return the next average, decay * average + (1 - decay) * weight (written into out when given, e.g. average)."""
    return torch.lerp(average, weight.to(average.dtype), 1.0 - decay, out=out)


class Averages:
    """The EMA of one network's state_dict: fp32 copies of its tensors, each paired with the live tensor it follows.

    The pairs hold the network's own tensors (state_dict(keep_vars=True)): loading a checkpoint into the network
    copies into them, so the pairs stay valid for the network's life.
    """

    def __init__(self, net: nn.Module):
        self.live = net.state_dict(keep_vars=True)
        # clone() keeps each tensor's memory format (channels_last convolutions stay so); float() makes fp32.
        self.state = {key: value.detach().float().clone() if value.is_floating_point() else value.detach().clone()
                      for key, value in self.live.items()}

    @torch.no_grad()
    def restart(self) -> None:
        """Set every average to the network's current tensor (the EMA starts again from here)."""
        for key, average in self.state.items():
            average.copy_(self.live[key])

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """Take one EMA step of every floating-point tensor (ema_step); other tensors are copied as they are."""
        for key, average in self.state.items():
            if average.is_floating_point():
                ema_step(average, self.live[key].detach(), decay, out=average)  # in place: no new tensor per step
            else:
                average.copy_(self.live[key])

    def state_dict(self) -> dict[str, Tensor]:
        """Return the averages as a plain state_dict of contiguous CPU tensors (the network files' format)."""
        return {key: value.detach().cpu().contiguous() for key, value in self.state.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy a state_dict of the network's keys and shapes into the averages (checked by the caller)."""
        for key, average in self.state.items():
            average.copy_(state[key])

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the averages with the network's tensors (twice = as before, bit for bit)."""
        for key, average in self.state.items():
            live = self.live[key]
            held = live.detach().clone()
            live.copy_(average)
            average.copy_(held)
