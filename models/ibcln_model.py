"""IBCLN: two ConvLSTM generators refining T and R in turn, three steps, and its losses (docs/method.md §1, §4)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import warnings

import torch
from torch import Tensor

from util import distributed, machine
from util.errors import UserError

from . import fast_path, losses, networks, parallel, tiling
from .base_model import BaseModel, NonFiniteLossError, VisualRoles
from .config import AMP_CHOICES, IBCLNConfig
from .ema import Averages

N_STEPS = 3
# Dynamo compiles ConvLSTMGenerator.forward once per variant (guard set), for G_T and G_R together: train or
# eval mode, zero or given LSTM state, with or without the extra heads, input with or without grad, and a
# static then a dynamic shape per mode when the image size changes. Counted on the CPU: 4 for training, 3
# more for validation, 3 more when a second validation size makes them dynamic (10), 14 if the training size
# changes too; dynamo's default limit is 8, after which new variants silently run uncompiled.
RECOMPILE_LIMIT = 32

# I and T_1..T_3 are scored against the ground truth T; the page shows the T row over the R row (R_k under
# T_k). T_0 (= I) and R_0 (the constant start) are not shown.
ROLES = VisualRoles(
    steps=(("I", "real_I_00"), ("T_1", "fake_Ts_01"), ("T_2", "fake_Ts_02"), ("T_3", "fake_Ts_03")),
    ground_truth="real_T_00", input="I", result="T_3",
    rows=((("real_I_00", "input I", "I"), ("fake_Ts_01", "T_1", "T_1"), ("fake_Ts_02", "T_2", "T_2"),
           ("fake_Ts_03", "T_3", "T_3"), ("real_T_00", "ground truth T", None)),
          (None, ("fake_Rs_01", "R_1", None), ("fake_Rs_02", "R_2", None), ("fake_Rs_03", "R_3", None))),
    hidden=frozenset({"fake_Ts_00", "fake_Rs_00"}))


def run_cascade(net_G_T: torch.nn.Module, net_G_R: torch.nn.Module, real_I: Tensor, n_steps: int = N_STEPS,
                last_R: bool = True) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Return ([T_0..T_n], [R_0..R_n], T_n at 1/2 scale, T_n at 1/4 scale) for input I (N,3,H,W), H, W % 4 == 0.

    T_0 = I and R_0 = 0.1; at step k, G_T sees (I, T_{k-1}, R_{k-1}) and G_R already sees the new T_k.
    Outputs are not clamped here: each step takes the previous step's raw values. With last_R=False the
    last G_R pass, whose R_n no T depends on, is skipped (R list ends at R_{n-1}; the Ts are unchanged).
    """
    height, width = real_I.shape[-2:]
    if height % 4 or width % 4:
        raise ValueError(f"IBCLN needs H and W divisible by 4, got {height}x{width}")
    # None is the zero state of the first step, which the generators treat as h = c = 0 (see ConvLSTMGenerator.lstm).
    h_T = c_T = h_R = c_R = None
    fake_Ts = [real_I]
    fake_Rs = [torch.full_like(real_I, 0.1)]
    half = quarter = real_I
    for step in range(n_steps):
        # Only G_T's last step feeds its half- and quarter-scale outputs to a loss (L_MP).
        t, h_T, c_T, half, quarter = net_G_T(torch.cat((real_I, fake_Ts[-1], fake_Rs[-1]), 1), h_T, c_T,
                                             heads=step == n_steps - 1)
        fake_Ts.append(t)
        if step == n_steps - 1 and not last_R:
            break
        r, h_R, c_R, _, _ = net_G_R(torch.cat((real_I, t, fake_Rs[-1]), 1), h_R, c_R, heads=False)
        fake_Rs.append(r)
    return fake_Ts, fake_Rs, half, quarter


class IBCLNModel(BaseModel):
    """The IBCLN model: G_T and G_R (one Adam), the PatchGAN D (its own Adam), and the losses of docs/method.md §4.

    Built from an IBCLNConfig: ``IBCLNModel(IBCLNConfig(ngf=64))`` is an untrained test-phase model on the CPU.
    """

    roles = ROLES
    config_class = IBCLNConfig

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Return the parser with IBCLN's flags: the perceptual loss's VGG19 (training), speed and tiling options."""
        if is_train:
            parser.add_argument("--vgg_weights", type=str, default="imagenet",
                                help="VGG19 for the perceptual loss: imagenet (torchvision download), a local "
                                     "torchvision vgg19 .pth file, or random (offline smoke runs only)")
        parser.add_argument("--fused_gates", action="store_true",
                            help="compute the four ConvLSTM gates with one convolution over their concatenated "
                                 "weights (same result and checkpoint format; no faster with oneDNN on the CPU)")
        parser.add_argument("--no_zero_state_skip", action="store_true",
                            help="run the full gate convolutions at the first cascade step, as released (default: "
                                 "skip the work on the zero LSTM state there; same result)")
        parser.add_argument("--channels_last", nargs="?", const="on", default="off" if is_train else "auto",
                            choices=fast_path.SWITCH,
                            help="memory format of the networks: on = channels_last (NHWC), off = NCHW, auto = the "
                                 "faster one for this phase on this device (models/fast_path.py); --channels_last "
                                 "alone = on. Same result to ~1e-6")
        parser.add_argument("--amp", nargs="?", const="auto", default="none", choices=AMP_CHOICES,
                            help="automatic mixed precision; --amp alone = bf16 where the GPU supports it, else fp16 "
                                 "(with loss scaling when training). On the CPU: bf16 only, and only on CPUs with "
                                 "bfloat16 instructions (AVX512-BF16 or AMX); outputs within about a grey level of "
                                 "fp32 (docs/performance.md, 'Mixed precision (--amp)')")
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the networks (the first iterations, and each new image size at test, "
                                 "are slow while it compiles)")
        if not is_train:
            parser.add_argument("--tile", type=int, default=0,
                                help="test images larger than TILE pixels (a multiple of 4) in overlapping TILE x TILE "
                                     "tiles, blended linearly, to bound memory; 0 = whole images. Tiles see less "
                                     "context, so results differ slightly (docs/performance.md, 'Large images')")
            parser.add_argument("--tile_overlap", type=int, default=128,
                                help="overlap of neighbouring tiles in pixels (a multiple of 4, at most TILE/2)")
        return parser

    def __init__(self, config: IBCLNConfig):
        super().__init__(config)
        self.loss_names = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]
        self.visual_names = ["fake_Ts", "real_T", "real_I", "fake_Rs"]
        self.model_names = ["G_T", "G_R", "D"] if self.is_train else ["G_T", "G_R"]
        if config.compile and len(self.gpu_ids) > 1:
            raise UserError("--compile with several --gpu_ids: DataParallel replicas would run the first GPU's "
                            "compiled code; train on several GPUs with torchrun (docs/gpu.md), or drop --compile")
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.channels_last, why = fast_path.resolve_channels_last(
            config.channels_last, self.device, "train" if self.is_train else "test", self.amp_dtype is not None)
        if config.channels_last == "auto" and distributed.is_main_process():
            print(f"--channels_last auto: {'on' if self.channels_last else 'off'} ({why})")
        self.tile = config.tile
        self.tile_overlap = config.tile_overlap
        self.netG_T = parallel.place_net(self._generator(), self.gpu_ids)
        self.netG_R = parallel.place_net(self._generator(), self.gpu_ids)
        # Loss scaling keeps small fp16 gradients from underflowing; bf16 has fp32's range and needs none.
        self.scaler = (torch.amp.GradScaler("cuda") if self.is_train and self.amp_dtype == torch.float16 else None)
        if self.is_train:
            self.netD = parallel.place_net(self._prepare(networks.define_D(config)), self.gpu_ids)
            if config.distributed:
                # With torchrun each network becomes a DistributedDataParallel; G_R's half- and quarter-scale
                # heads feed no loss, hence find_unused_parameters for it.
                self.netG_T = distributed.wrap(self.netG_T, self.gpu_ids)
                self.netG_R = distributed.wrap(self.netG_R, self.gpu_ids, find_unused_parameters=True)
                self.netD = distributed.wrap(self.netD, self.gpu_ids)
            self.vgg = self._prepare(networks.load_vgg_features(config.vgg_weights).to(self.device))
            self.criterion_gan = losses.GANLoss(config.gan_mode)
            self.optimizer_G = torch.optim.Adam(itertools.chain(self.netG_T.parameters(), self.netG_R.parameters()),
                                                lr=config.lr, betas=(config.beta1, 0.999))
            self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
            self.optimizers = [self.optimizer_G, self.optimizer_D]
            if config.ema_decay:
                # The EMA of the generators (docs/training.md#ema-of-the-weights), moved after every step of G's
                # optimiser that happens: a step the fp16 loss scaler skips (inf/NaN gradients) runs no hook.
                self.averages = {name: Averages(self.nets()[name]) for name in ("G_T", "G_R")}
                self.optimizer_G.register_step_post_hook(lambda optimizer, args, kwargs: self.update_averages())
        self.crop_to: tuple[int, int] | None = None

    def _generator(self) -> networks.ConvLSTMGenerator:
        """Return a new generator with the shortcuts the config allows, in the chosen memory format."""
        net = networks.define_G(self.config).configure(fused_gates=self.config.fused_gates,
                                                       skip_zero_state=not self.config.no_zero_state_skip)
        return self._prepare(net)

    def _prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        """Return net in channels_last format and compiled, as the config asks (the state_dict keys stay the same)."""
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.config.compile:
            if not self.is_train:
                # Test weights are fixed once loaded (the run loads them before the first, compiling, forward): let
                # inductor fold them as constants (on the CPU: prepacked oneDNN weights, fused conv + ReLU).
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
            net.compile()  # in place: unlike torch.compile(net), no _orig_mod. prefix in the state_dict
        return net

    def _to_device(self, x: Tensor) -> Tensor:
        """Return an image batch on the model's device, in its memory format."""
        # non_blocking: from the loader's pinned memory the copy runs alongside the GPU's work (a no-op on the CPU).
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def autocast(self) -> contextlib.AbstractContextManager:
        """Return the autocast context of --amp (a no-op without it)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def set_input(self, data: dict) -> None:
        """Take a batch of the resize_natural_3 dataset (I, T, T2, T4, alpha, isNatural, paths)."""
        self.real_I = self._to_device(data["I"])
        self.real_T = self._to_device(data["T"])
        self.real_T2 = self._to_device(data["T2"]) if "T2" in data else None
        self.real_T4 = self._to_device(data["T4"]) if "T4" in data else None
        alpha = torch.as_tensor(data["alpha"], dtype=torch.float32).reshape(-1).to(self.device, non_blocking=True)
        # The released recipe rounds the transmission weight to one decimal in the losses (docs/method.md §4).
        self.alpha = torch.round(alpha * 10) / 10
        self.synthetic = ~torch.as_tensor(data["isNatural"], dtype=torch.bool).reshape(-1).to(self.device,
                                                                                              non_blocking=True)
        # Test samples padded to a multiple of 4 carry their original size; outputs are cropped back to it.
        if "orig_size" in data:
            h, w = data["orig_size"]
            self.crop_to = (int(h[0]), int(w[0]))
        else:
            self.crop_to = None

    def forward(self) -> None:
        """Run the cascade for a training step (raw outputs, with the half- and quarter-scale heads)."""
        with self.autocast():
            self.fake_Ts, self.fake_Rs, self.fake_T_half, self.fake_T_quarter = run_cascade(
                self.netG_T, self.netG_R, self.real_I)

    def test(self, scored_only: bool = False) -> None:
        """Run the cascade for inference (tiled with --tile), clamp every output to [0,1] and crop any padding away.

        Works for a training model too (validation): the bare networks run, so a DDP wrapper on one rank
        waits for nothing; eval or train mode is the caller's choice. scored_only (validation) skips the
        last G_R pass: R_3 is not scored and no T depends on it (a sixth of the cascade's work).
        """
        self.fake_Ts, self.fake_Rs = self.infer(self.real_I, last_R=not scored_only)
        self.fake_T_half = self.fake_T_quarter = None  # they feed training losses only
        if self.crop_to is not None:
            h, w = self.crop_to
            self.fake_Ts = [t[..., :h, :w] for t in self.fake_Ts]
            self.fake_Rs = [r[..., :h, :w] for r in self.fake_Rs]
            self.real_I = self.real_I[..., :h, :w]
            self.real_T = self.real_T[..., :h, :w]

    def infer(self, image: Tensor, n_steps: int = N_STEPS, last_R: bool = True, tile: int | None = None,
              overlap: int | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Return ([T_0..T_n], [R_0..R_n]) for image (N,3,H,W; H, W multiples of 4), clamped to [0,1], in float32.

        The inference of test.py and of the Python API (models/api.py): inference mode, --amp's autocast, the
        model's memory format, and tiles when the longer side exceeds `tile` (None: --tile / --tile_overlap).
        """
        net_G_T, net_G_R = parallel.unwrap(self.netG_T), parallel.unwrap(self.netG_R)
        tile = self.tile if tile is None else tile
        overlap = self.tile_overlap if overlap is None else overlap
        image = self._to_device(image)
        with torch.inference_mode(), self.autocast():
            def cascade(crop: Tensor) -> tuple[list[Tensor], list[Tensor]]:
                return self._finite_cascade(net_G_T, net_G_R, crop, n_steps, last_R)

            if tile and max(image.shape[-2:]) > tile:
                fake_Ts, fake_Rs = tiling.tiled_cascade(cascade, image, tile, overlap)
            else:
                fake_Ts, fake_Rs = cascade(image)
        return [t.float().clamp(0, 1) for t in fake_Ts], [r.float().clamp(0, 1) for r in fake_Rs]

    fp16_redone = 0  # images or tiles whose fp16 outputs overflowed and were computed again in fp32

    def _finite_cascade(self, net_G_T: torch.nn.Module, net_G_R: torch.nn.Module, crop: Tensor, n_steps: int,
                        last_R: bool) -> tuple[list[Tensor], list[Tensor]]:
        """Return run_cascade's ([T_0..T_n], [R_0..R_n]) of crop; under --amp fp16 an inf or NaN redoes it in fp32.

        fp16's largest value is 65504: a bright or unusual image can overflow it, and clamping would turn the inf
        or NaN into white or black pixels. The first redo of a model says so (a warning); bf16 has fp32's range.
        """
        fake_Ts, fake_Rs = run_cascade(net_G_T, net_G_R, crop, n_steps, last_R)[:2]
        if self.amp_dtype != torch.float16 or bool(torch.stack([o.isfinite().all() for o in fake_Ts + fake_Rs]).all()):
            return fake_Ts, fake_Rs
        if not self.fp16_redone:
            warnings.warn("--amp fp16: an image or tile overflowed fp16 (inf or NaN in its outputs) and was computed "
                          "again in fp32; later ones are redone without a word (--amp bf16 has fp32's range)",
                          stacklevel=3)
        self.fp16_redone += 1
        with torch.autocast(self.device.type, enabled=False):
            return run_cascade(net_G_T, net_G_R, crop.float(), n_steps, last_R)[:2]

    def backward_G(self) -> None:
        """Compute L_G = L_T + L_res + L_MP + L_adv + L_R and its gradients."""
        # Under --amp the generators' outputs are bf16/fp16: the losses are taken on them in fp32 (no-op otherwise).
        steps_T, steps_R = [t.float() for t in self.fake_Ts[1:]], [r.float() for r in self.fake_Rs[1:]]
        with self.autocast():
            self.loss_idt_T = losses.pixel_loss(steps_T, self.real_T)
            self.loss_res = losses.residual_loss(self.real_I, steps_T, steps_R, self.alpha, self.synthetic)
            # The ground truth's VGG features are computed once per scale, without gradient (perceptual_loss).
            self.loss_MP = losses.multiscale_perceptual_loss(
                self.vgg, (steps_T[-1], self.fake_T_half.float(), self.fake_T_quarter.float()),
                (self.real_T, self.real_T2, self.real_T4))
            # D is frozen here: call the bare module so that a DDP wrapper does not wait for D gradients.
            self.loss_G = losses.ADV_WEIGHT * self.criterion_gan(parallel.unwrap(self.netD)(steps_T[-1]), True)
            self.loss_T = self.loss_idt_T + self.loss_res + self.loss_MP + self.loss_G
            self.loss_idt_R = losses.reflection_loss(self.real_I, self.real_T, steps_R, self.alpha, self.synthetic)
            self.loss_R = self.loss_idt_R
        self._scaled(self.loss_T + self.loss_R).backward()

    def compute_loss_D(self) -> None:
        """Compute L_D = 0.5 * (GAN(D(T), real) + GAN(D(T_3), fake)) (D trainable, T_3 detached)."""
        with self.autocast():
            loss_real = self.criterion_gan(self.netD(self.real_T), True)
            loss_fake = self.criterion_gan(self.netD(self.fake_Ts[-1].detach()), False)
            self.loss_D = 0.5 * (loss_real + loss_fake)

    def _scaled(self, loss: Tensor) -> Tensor:
        """Return the loss multiplied by the fp16 loss scale (unchanged without fp16 AMP)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def _step(self, optimizer: torch.optim.Optimizer) -> None:
        """Take an optimiser step (through the loss scaler with fp16 AMP, which skips steps with inf/NaN grads)."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def update_averages(self) -> None:
        """Move the generators' EMA one step towards their current weights (after each step of G's optimiser)."""
        for averages in self.averages.values():
            averages.update(self.config.ema_decay)

    def check_finite(self, names: tuple[str, ...]) -> None:
        """Raise NonFiniteLossError naming the first of these losses that is NaN or Inf, in every process at once.

        One read from the device when all are finite (the test runs there); the culprit is looked for only
        after that read says something is wrong. Under torchrun the processes first agree (one all-reduce
        of the flag): a process that stopped alone would leave the others waiting in DDP's next all-reduce.
        """
        values = torch.stack([getattr(self, "loss_" + name).detach().float().reshape(()) for name in names])
        if distributed.all_ranks_true(torch.isfinite(values).all()):
            return
        for name, value in zip(names, values.tolist()):
            if not math.isfinite(value):
                raise NonFiniteLossError(name, value)
        raise NonFiniteLossError(None)

    def optimize_parameters(self) -> None:
        """One step: forward, G update with D frozen, then D update (the released order and numbers).

        L_D is computed before G's update (it does not depend on it: T_3 is detached and G's step leaves D
        alone), so that one finiteness check, one read from the device, covers every loss before any step.
        With --ema_decay, G's step also moves the EMA (update_averages, a hook of G's optimiser).
        """
        self.forward()
        self.set_requires_grad(self.netD, True)
        self.compute_loss_D()
        self.set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self.check_finite(("idt_T", "res", "MP", "G", "idt_R", "D"))
        self._step(self.optimizer_G)
        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self._scaled(self.loss_D).backward()
        self._step(self.optimizer_D)
        if self.scaler is not None:
            self.scaler.update()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype for --amp on device (None for none); a choice the device cannot run is a UserError.

    On CUDA, bf16 is chosen by the given device's own compute capability (not the current device's).
    """
    if amp in (None, "none"):
        return None
    if device.type != "cuda":
        # oneDNN runs bf16 convolutions about twice as fast as fp32 on CPUs with bf16 instructions; without
        # them it emulates bf16 and is slower than fp32, and CPU fp16 convolutions are slower still.
        if amp == "fp16":
            raise UserError("--amp fp16: float16 autocast is for CUDA devices; on the CPU use --amp bf16 "
                            "(or drop --amp)")
        if not machine.cpu_has_native_bf16():
            raise UserError(f"--amp {amp}: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bf16 "
                            "would be slower than fp32; drop --amp (AMP is for CUDA devices and bf16-capable CPUs)")
        return torch.bfloat16
    if amp == "auto":
        return torch.bfloat16 if machine.cuda_has_native_bf16(device) else torch.float16
    if amp == "bf16" and not machine.cuda_has_native_bf16(device):
        raise UserError(f"--amp bf16: {device} has no native bfloat16 (compute capability below 8.0); use --amp fp16")
    return torch.bfloat16 if amp == "bf16" else torch.float16
