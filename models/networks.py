"""The networks of IBCLN: the ConvLSTM generator, the PatchGAN discriminator and the VGG19 feature extractor.

Module names follow the released checkpoints (docs/method.md §2-§3): every layer is an ``nn.Sequential`` so
that state_dict keys read ``conv1.0.weight``, ``conv_i.0.bias``, ``model.11.weight`` ... and the
authors' ``final_net_G_T.pth`` / ``final_net_G_R.pth`` load unchanged.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.errors import UserError

from .config import IBCLNConfig


def conv_block(in_c: int, out_c: int, kernel: int, stride: int = 1, dilation: int = 1,
               act: nn.Module | None = None) -> nn.Sequential:
    """Return Sequential(conv with 'same'-style padding and bias, activation); in-place ReLU unless told otherwise."""
    padding = dilation * (kernel - 1) // 2
    conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, dilation=dilation, bias=True)
    # In place: the convolution's output is not needed by its backward, so this saves a pass and a buffer.
    return nn.Sequential(conv, act if act is not None else nn.ReLU(inplace=True))


class ReflectionPad2d(nn.ReflectionPad2d):
    """nn.ReflectionPad2d that, under torch.use_deterministic_algorithms(True), pads by slicing and concatenation.

    CUDA's reflection-pad backward adds gradients with atomics, so deterministic mode refuses it; slices,
    flips and a concatenation give the same values and have exact, ordered backwards. Otherwise the native
    kernel runs.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Return x reflection-padded by self.padding (left, right, top, bottom)."""
        if not torch.are_deterministic_algorithms_enabled():
            return super().forward(x)
        left, right, top, bottom = self.padding
        for dim, before, after in ((-1, left, right), (-2, top, bottom)):
            length = x.shape[dim]
            parts = [x.narrow(dim, 1, before).flip(dim)] if before else []
            parts.append(x)
            if after:
                parts.append(x.narrow(dim, length - 1 - after, after).flip(dim))
            x = torch.cat(parts, dim=dim) if len(parts) > 1 else x
        return x


def upsample_block(in_c: int, out_c: int) -> nn.Sequential:
    """Return the released decoder's x2 upsampling: transposed conv, pad (1,0,1,0), 2x2 avg pool (stride 1), ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_c, out_c, 4, stride=2, padding=1, bias=True),
        # The pad + stride-1 pool smooths the checkerboard of the transposed conv without changing the size.
        ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(inplace=True),
    )


def set_inplace_relu(net: nn.Module, inplace: bool) -> None:
    """Switch every ReLU of net to in-place or out-of-place (the same values; in place saves memory traffic)."""
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = inplace


GATES = ("conv_i", "conv_f", "conv_g", "conv_o")


class Dropout(nn.Dropout):
    """nn.Dropout that draws its mask in NCHW order whatever the memory format of its input.

    torch's dropout fills its random mask in memory order, so a channels_last tensor would get other masks
    than the NCHW one from the same seed; drawing them as NCHW keeps channels_last training on the same
    random stream as the plain path (and testable against it). NCHW inputs take the native kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Return x with dropout applied in training mode (x itself in eval mode)."""
        if not self.training or self.p == 0 or x.is_contiguous():
            return super().forward(x)
        # What the native kernel computes (x * (bernoulli(1 - p) / (1 - p))), with the mask laid out as NCHW.
        noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * noise


class ConvLSTMGenerator(nn.Module):
    """One IBCLN generator ("gen_drop"): encoder, ConvLSTM at 1/4 scale, decoder with three output scales.

    ``forward(x, h, c)`` takes 9 channels cat(I, T_prev, R_prev) and the LSTM state (N, 256, H/4, W/4),
    or h = c = None for the zero state of the first step; it returns (full-scale output, h, c, half-scale
    output, quarter-scale output).

    Shortcuts that leave the result unchanged (``configure`` switches them): ``skip_zero_state`` (on by
    default) drops, at the first step where h = c = 0, the h half of the gates' input channels and the
    forget gate (f * c = 0), 23% of that step's work; ``skip_unused_heads`` (on) does not compute
    half/quarter outputs that the caller does not want; ReLUs run in place (on); ``fused_gates`` (off:
    no faster with oneDNN on the CPU, docs/performance.md, "Other speed options") computes the four gate convolutions
    conv_i/conv_f/conv_g/conv_o as one convolution with their weights concatenated, the checkpoint still
    holding the four. At most the order of floating-point sums changes (outputs within ~1e-6 of plain).
    """

    def __init__(self, input_nc: int = 9, output_nc: int = 3, ngf: int = 64, use_dropout: bool = True):
        super().__init__()
        c1, c2, c3 = ngf, ngf * 2, ngf * 4  # 64, 128, 256
        self.hidden_channels = c3
        self.conv1 = conv_block(input_nc, c1, 5)
        self.conv2 = conv_block(c1, c2, 3, stride=2)
        self.conv3 = conv_block(c2, c2, 3)
        self.conv4 = conv_block(c2, c3, 3, stride=2)
        self.conv5 = conv_block(c3, c3, 3)
        self.conv6 = conv_block(c3, c3, 3)
        self.diconv1 = conv_block(c3, c3, 3, dilation=2)
        self.diconv2 = conv_block(c3, c3, 3, dilation=4)
        self.diconv3 = conv_block(c3, c3, 3, dilation=8)
        self.diconv4 = conv_block(c3, c3, 3, dilation=16)
        self.conv7 = conv_block(c3, c3, 3)
        self.conv_i = conv_block(2 * c3, c3, 3, act=nn.Sigmoid())
        self.conv_f = conv_block(2 * c3, c3, 3, act=nn.Sigmoid())
        self.conv_g = conv_block(2 * c3, c3, 3, act=nn.Tanh())
        self.conv_o = conv_block(2 * c3, c3, 3, act=nn.Sigmoid())
        self.conv8 = conv_block(c3, c3, 3)
        self.deconv1 = upsample_block(c3, c2)
        self.conv9 = conv_block(c2, c2, 3)
        self.dropout = Dropout(0.3) if use_dropout else nn.Identity()
        self.deconv2 = upsample_block(c2, c1)
        self.conv10 = conv_block(c1, ngf // 2, 3)
        self.outframe1 = conv_block(c3, output_nc, 3)
        self.outframe2 = conv_block(c2, output_nc, 3)
        self.output = conv_block(ngf // 2, output_nc, 3)
        self.fused_gates = False
        self.skip_zero_state = True
        self.skip_unused_heads = True

    def configure(self, fused_gates: bool | None = None, skip_zero_state: bool | None = None,
                  skip_unused_heads: bool | None = None, inplace_relu: bool | None = None) -> ConvLSTMGenerator:
        """Set the computation shortcuts (None leaves one as it is); return self. Weights are unaffected.

        All off (and inplace_relu off) is the released computation, op for op.
        """
        if fused_gates is not None:
            self.fused_gates = fused_gates
        if skip_zero_state is not None:
            self.skip_zero_state = skip_zero_state
        if skip_unused_heads is not None:
            self.skip_unused_heads = skip_unused_heads
        if inplace_relu is not None:
            set_inplace_relu(self, inplace_relu)
        return self

    def forward(self, x: Tensor, h: Tensor | None = None, c: Tensor | None = None, heads: bool = True
                ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Return (output, h, c, half-scale output, quarter-scale output) for one cascade step (h, c None: zero).

        With heads=False the half- and quarter-scale outputs, which only the last step of G_T feeds to a loss,
        are not computed (None), unless ``skip_unused_heads`` is off.
        """
        skip1 = self.conv1(x)
        skip2 = self.conv3(self.conv2(skip1))
        x = self.conv4(skip2)
        for layer in (self.conv5, self.conv6, self.diconv1, self.diconv2, self.diconv3, self.diconv4, self.conv7):
            x = layer(x)
        h, c = self.lstm(x, h, c)
        x = self.conv8(h)
        with_heads = heads or not self.skip_unused_heads
        quarter = self.outframe1(x) if with_heads else None
        x = self.deconv1(x) + skip2
        x = self.dropout(self.conv9(x))
        half = self.outframe2(x) if with_heads else None
        x = self.deconv2(x) + skip1
        out = self.output(self.conv10(x))
        return out, h, c, half, quarter

    def lstm(self, x: Tensor, h: Tensor | None, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """Return the new (h, c) of the ConvLSTM cell for features x and state (h, c); None means the zero state."""
        n_hidden = self.hidden_channels
        if h is None or c is None:
            if self.skip_zero_state:
                # h = 0: only the x half of the input channels contributes; c = 0: the forget gate has no effect.
                i, g, o = self._gate_activations(x, ("conv_i", "conv_g", "conv_o"), x_only=True)
                c = i * g
                return o * torch.tanh(c), c
            h = torch.zeros_like(x[:, :n_hidden])
            c = torch.zeros_like(h)
        i, f, g, o = self._gate_activations(torch.cat((x, h), dim=1), GATES, x_only=False)
        c = f * c + i * g
        return o * torch.tanh(c), c

    def _gate_activations(self, inp: Tensor, names: tuple[str, ...], x_only: bool) -> list[Tensor]:
        """Return the activated gates `names` for input inp (cat(x, h), or x alone with x_only)."""
        blocks = [getattr(self, name) for name in names]
        if not self.fused_gates:
            if not x_only:
                return [block(inp) for block in blocks]
            n_in = inp.shape[1]
            return [block[1](self._conv(block[0], inp, block[0].weight[:, :n_in], block[0].bias)) for block in blocks]
        weight, bias = self._fused_weights(names, inp.shape[1] if x_only else None)
        parts = self._conv(blocks[0][0], inp, weight, bias).split(self.hidden_channels, dim=1)
        return [block[1](part) for block, part in zip(blocks, parts)]

    @staticmethod
    def _conv(like: nn.Conv2d, inp: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Return F.conv2d of inp with the given weights and the stride, padding and dilation of `like`."""
        return F.conv2d(inp, weight, bias, like.stride, like.padding, like.dilation)

    def _fused_weights(self, names: tuple[str, ...], n_in: int | None) -> tuple[Tensor, Tensor]:
        """Return the gates' weights (first n_in input channels; all for None) and biases, concatenated."""
        # Concatenated at every call (part of the autograd graph when training): a copy of ~19 MB per step,
        # small next to the convolution it feeds.
        convs = [getattr(self, name)[0] for name in names]
        weight = torch.cat([conv.weight if n_in is None else conv.weight[:, :n_in] for conv in convs], dim=0)
        if convs[0].weight.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = torch.cat([conv.bias for conv in convs], dim=0)
        return weight, bias


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator ("basic", n_layers=3) as in docs/method.md §3; keys model.0, model.2, ..., model.11."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        # Instance norm without affine parameters leaves the shift to the conv bias.
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=use_bias),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Return the patch logits (N, 1, h, w)."""
        return self.model(x)


def get_norm_layer(norm: str):
    """Return a factory for the normalisation layer named by ``--norm``."""
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda _channels: nn.Identity()
    raise UserError(f"--norm {norm}: expected instance, batch or none")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> None:
    """Initialise conv weights in place (normal(0, gain) by default, as released) and zero their biases."""
    def init_one(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=init_gain)
            else:
                raise UserError(f"--init_type {init_type}: expected normal, xavier, kaiming or orthogonal")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.zeros_(m.bias)

    net.apply(init_one)


def define_G(config: IBCLNConfig) -> ConvLSTMGenerator:
    """Return a freshly initialised generator for config.netG."""
    if config.netG != "gen_drop":
        raise UserError(f"--netG {config.netG}: IBCLN has one generator architecture, gen_drop")
    net = ConvLSTMGenerator(3 * config.input_nc, config.output_nc, config.ngf, use_dropout=not config.no_dropout)
    init_weights(net, config.init_type, config.init_gain)
    return net


def define_D(config: IBCLNConfig) -> NLayerDiscriminator:
    """Return a freshly initialised discriminator for config.netD."""
    if config.netD == "basic":
        net = NLayerDiscriminator(config.output_nc, config.ndf, 3, config.norm)
    elif config.netD == "n_layers":
        net = NLayerDiscriminator(config.output_nc, config.ndf, config.n_layers_D, config.norm)
    else:
        raise UserError(f"--netD {config.netD}: expected basic or n_layers")
    init_weights(net, config.init_type, config.init_gain)
    return net


class VGGFeatures(nn.Module):
    """Frozen VGG19 layers 0..6 (conv1_1 .. relu2_1); returns the activations after relu1_1 and relu2_1."""

    taps = (1, 6)

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Return self, staying in eval mode: the loss network never trains."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return [relu1_1, relu2_1] features of x (inputs in [0,1], not mean/std normalised, as released)."""
        feats = []
        for idx, layer in enumerate(self.layers):
            x = layer(x)
            if idx in self.taps:
                feats.append(x)
                if idx == self.taps[-1]:
                    break
        return feats


def load_vgg_features(source: str) -> VGGFeatures:
    """Return the perceptual-loss VGG19 from 'imagenet' (torchvision download), a local .pth file, or 'random'."""
    from torchvision.models import VGG19_Weights, vgg19

    keep = VGGFeatures.taps[-1] + 1
    if source == "random":
        warnings.warn("--vgg_weights random: the VGG19 of the perceptual loss is untrained, so L_MP is "
                      "meaningless; use this only for offline smoke runs", stacklevel=2)
        return VGGFeatures(vgg19(weights=None).features[:keep])
    if source == "imagenet":
        try:
            net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
        except Exception as err:  # any download or cache failure ends up here
            raise UserError(
                f"could not obtain torchvision's ImageNet VGG19 weights ({type(err).__name__}: {err}). "
                "Pass --vgg_weights PATH (a local vgg19 state_dict, e.g. vgg19-dcbb9e9d.pth) or "
                "--vgg_weights random (offline smoke runs only)") from None
        return VGGFeatures(net.features[:keep])
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"--vgg_weights {source}: no such file (expected imagenet, random or a .pth path)") from None
    except Exception as err:
        raise UserError(f"--vgg_weights {source}: cannot read it as a torch state_dict ({err})") from None
    net = vgg19(weights=None)
    wanted = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < keep}
    expected = {k for k in net.state_dict() if k.startswith("features.") and int(k.split(".")[1]) < keep}
    if set(wanted) != expected:
        missing = sorted(expected - set(wanted))
        raise UserError(f"--vgg_weights {source}: not a torchvision vgg19 state_dict (missing {missing})")
    features = net.features[:keep]
    features.load_state_dict({k.split(".", 1)[1]: v for k, v in wanted.items()})
    return VGGFeatures(features)
