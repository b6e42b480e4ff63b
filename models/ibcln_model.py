"""IBCLN: two ConvLSTM generators refining T and R in turn for three steps (SPEC §1), trained with SPEC §4."""

from __future__ import annotations

import argparse
import itertools

import torch
from torch import Tensor

from util import distributed

from . import losses, networks
from .base_model import BaseModel, NonFiniteLossError

N_STEPS = 3


def run_cascade(net_G_T: torch.nn.Module, net_G_R: torch.nn.Module, real_I: Tensor, n_steps: int = N_STEPS
                ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Return ([T_0..T_n], [R_0..R_n], T_n at 1/2 scale, T_n at 1/4 scale) for input I (N,3,H,W), H, W % 4 == 0.

    T_0 = I and R_0 = 0.1; at step k, G_T sees (I, T_{k-1}, R_{k-1}) and G_R already sees the new T_k.
    Outputs are not clamped here: each step takes the previous step's raw values.
    """
    height, width = real_I.shape[-2:]
    if height % 4 or width % 4:
        raise ValueError(f"IBCLN needs H and W divisible by 4, got {height}x{width}")
    h_T, c_T = networks.unwrap(net_G_T).init_state(real_I)
    h_R, c_R = networks.unwrap(net_G_R).init_state(real_I)
    fake_Ts = [real_I]
    fake_Rs = [torch.full_like(real_I, 0.1)]
    half = quarter = real_I
    for _ in range(n_steps):
        t, h_T, c_T, half, quarter = net_G_T(torch.cat((real_I, fake_Ts[-1], fake_Rs[-1]), 1), h_T, c_T)
        fake_Ts.append(t)
        r, h_R, c_R, _, _ = net_G_R(torch.cat((real_I, t, fake_Rs[-1]), 1), h_R, c_R)
        fake_Rs.append(r)
    return fake_Ts, fake_Rs, half, quarter


class IBCLNModel(BaseModel):
    """The IBCLN model: G_T and G_R (one Adam), the PatchGAN D (its own Adam), and SPEC §4's losses."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Return the parser with IBCLN's flags (the VGG19 weights of the perceptual loss when training)."""
        if is_train:
            parser.add_argument("--vgg_weights", type=str, default="imagenet",
                                help="VGG19 for the perceptual loss: imagenet (torchvision download), a local "
                                     "torchvision vgg19 .pth file, or random (offline smoke runs only)")
        return parser

    def __init__(self, opt: argparse.Namespace):
        super().__init__(opt)
        self.loss_names = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]
        self.visual_names = ["fake_Ts", "real_T", "real_I", "fake_Rs"]
        self.model_names = ["G_T", "G_R", "D"] if self.is_train else ["G_T", "G_R"]
        self.netG_T = networks.place_net(networks.define_G(opt), self.gpu_ids)
        self.netG_R = networks.place_net(networks.define_G(opt), self.gpu_ids)
        if self.is_train:
            self.netD = networks.place_net(networks.define_D(opt), self.gpu_ids)
            # With torchrun each network becomes a DistributedDataParallel; G_R's half- and quarter-scale
            # heads feed no loss, hence find_unused_parameters for it.
            self.netG_T = distributed.wrap(self.netG_T, opt)
            self.netG_R = distributed.wrap(self.netG_R, opt, find_unused_parameters=True)
            self.netD = distributed.wrap(self.netD, opt)
            self.vgg = networks.load_vgg_features(opt.vgg_weights).to(self.device)
            self.criterion_gan = losses.GANLoss(opt.gan_mode)
            self.optimizer_G = torch.optim.Adam(itertools.chain(self.netG_T.parameters(), self.netG_R.parameters()),
                                                lr=opt.lr, betas=(opt.beta1, 0.999))
            self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
            self.optimizers = [self.optimizer_G, self.optimizer_D]
        self.crop_to: tuple[int, int] | None = None

    def set_input(self, data: dict) -> None:
        """Take a batch of the resize_natural_3 dataset (I, T, T2, T4, alpha, isNatural, paths)."""
        self.real_I = data["I"].to(self.device)
        self.real_T = data["T"].to(self.device)
        self.real_T2 = data["T2"].to(self.device) if "T2" in data else None
        self.real_T4 = data["T4"].to(self.device) if "T4" in data else None
        alpha = torch.as_tensor(data["alpha"], dtype=torch.float32).reshape(-1).to(self.device)
        # The released recipe rounds the transmission weight to one decimal in the losses (SPEC §4).
        self.alpha = torch.round(alpha * 10) / 10
        self.synthetic = ~torch.as_tensor(data["isNatural"], dtype=torch.bool).reshape(-1).to(self.device)
        self.image_paths = list(data["I_path"]) if "I_path" in data else []
        # Test samples padded to a multiple of 4 carry their original size; outputs are cropped back to it.
        if "orig_size" in data:
            h, w = data["orig_size"]
            self.crop_to = (int(h[0]), int(w[0]))
        else:
            self.crop_to = None

    def forward(self) -> None:
        """Run the cascade; at test time clamp every output to [0,1] and crop any padding away."""
        self.fake_Ts, self.fake_Rs, self.fake_T_half, self.fake_T_quarter = run_cascade(
            self.netG_T, self.netG_R, self.real_I)
        if not self.is_train:
            self.fake_Ts = [t.clamp(0, 1) for t in self.fake_Ts]
            self.fake_Rs = [r.clamp(0, 1) for r in self.fake_Rs]
            if self.crop_to is not None:
                h, w = self.crop_to
                self.fake_Ts = [t[..., :h, :w] for t in self.fake_Ts]
                self.fake_Rs = [r[..., :h, :w] for r in self.fake_Rs]
                self.real_I = self.real_I[..., :h, :w]
                self.real_T = self.real_T[..., :h, :w]

    def backward_G(self) -> None:
        """Compute L_G = L_T + L_res + L_MP + L_adv + L_R and its gradients."""
        steps_T, steps_R = self.fake_Ts[1:], self.fake_Rs[1:]
        self.loss_idt_T = losses.pixel_loss(steps_T, self.real_T)
        self.loss_res = losses.residual_loss(self.real_I, steps_T, steps_R, self.alpha, self.synthetic)
        self.loss_MP = losses.multiscale_perceptual_loss(
            self.vgg, (steps_T[-1], self.fake_T_half, self.fake_T_quarter), (self.real_T, self.real_T2, self.real_T4))
        # D is frozen here: call the bare module so that a DDP wrapper does not wait for D gradients.
        self.loss_G = losses.ADV_WEIGHT * self.criterion_gan(networks.unwrap(self.netD)(steps_T[-1]), True)
        self.loss_T = self.loss_idt_T + self.loss_res + self.loss_MP + self.loss_G
        self.loss_idt_R = losses.reflection_loss(self.real_I, self.real_T, steps_R, self.alpha, self.synthetic)
        self.loss_R = self.loss_idt_R
        self.check_finite(("idt_T", "res", "MP", "G", "idt_R"))
        (self.loss_T + self.loss_R).backward()

    def backward_D(self) -> None:
        """Compute L_D = 0.5 * (GAN(D(T), real) + GAN(D(T_3), fake)) and its gradients."""
        loss_real = self.criterion_gan(self.netD(self.real_T), True)
        loss_fake = self.criterion_gan(self.netD(self.fake_Ts[-1].detach()), False)
        self.loss_D = 0.5 * (loss_real + loss_fake)
        self.check_finite(("D",))
        self.loss_D.backward()

    def check_finite(self, names: tuple[str, ...]) -> None:
        """Raise NonFiniteLossError naming the first of these losses that is NaN or Inf."""
        for name in names:
            value = getattr(self, "loss_" + name)
            if not bool(torch.isfinite(value)):
                raise NonFiniteLossError(name, float(value))

    def optimize_parameters(self) -> None:
        """One step: forward, G update with D frozen, then D update (the released order)."""
        self.forward()
        self.set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.backward_G()
        self.optimizer_G.step()
        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.backward_D()
        self.optimizer_D.step()
