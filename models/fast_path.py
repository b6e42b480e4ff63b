"""--channels_last auto: the faster memory format for each phase (training, inference) on this machine.

A rule, backed by tools/benchmark.py (docs/usage.md, "Fast by default", has the tables and the command):
the default model in NCHW and in channels_last, interleaved runs, medians; channels_last's time over NCHW's.

- CPU, fp32 inference: channels_last. Test cascade 0.81x at 256² and 0.75x at 512² on an AMD EPYC with
  AVX-512 (AVX512-BF16); 0.76x at 256² on an AMD EPYC without AVX-512.
- CPU, fp32 training: channels_last where ATen runs AVX-512 kernels (a training iteration 0.90x on the
  AVX-512 EPYC), NCHW elsewhere (1.14x on the EPYC without AVX-512; other CPUs were not measured).
- Under autocast (--amp), either phase: channels_last. On the AVX-512 EPYC, bf16 training 0.79x, bf16 test
  0.75x at 256² and 0.68x at 512².
- CUDA, fp32: NCHW as released, since channels_last was not measured on a GPU here; under autocast
  channels_last, the layout of the tensor cores' convolution kernels.

--amp itself stays the user's choice: it changes the results (by bf16/fp16 rounding), the memory format
does not (to ~1e-6).
"""

from __future__ import annotations

import torch

from util.errors import UserError

SWITCH = ("auto", "on", "off")


def channels_last_rule(device: torch.device, phase: str, amp: bool = False) -> tuple[bool, str]:
    """Return (whether channels_last is the faster format for phase 'train' or 'test' on device, the reason)."""
    if amp:
        return True, "autocast: the bf16/fp16 convolutions are faster in channels_last"
    if device.type == "cuda":
        return False, "CUDA fp32: NCHW, as released (channels_last not measured on a GPU here)"
    if phase == "test":
        return True, "CPU fp32 inference: channels_last was faster on every CPU measured"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return True, f"CPU fp32 training with {capability} kernels: channels_last was faster"
    return False, f"CPU fp32 training with {capability} kernels: channels_last was slower without AVX-512"


def parse_switch(value: str, flag: str) -> bool:
    """Return True for 'on', False for 'off'; anything else is a UserError naming the flag."""
    if value not in ("on", "off"):
        raise UserError(f"--{flag} {value}: expected on, off or auto")
    return value == "on"


def resolve_channels_last(value: str | bool, device: torch.device, phase: str, amp: bool = False
                          ) -> tuple[bool, str]:
    """Return (channels_last on or off, why) for --channels_last auto|on|off (a bool is taken as on/off)."""
    if isinstance(value, bool):
        return value, "asked for"
    if value == "auto":
        return channels_last_rule(device, phase, amp)
    return parse_switch(value, "channels_last"), "asked for"
