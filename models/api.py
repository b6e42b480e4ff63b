"""The Python API: load IBCLN's two generators once, then remove reflections from images of any size.

    from models import load_ibcln
    model = load_ibcln("checkpoints/IBCLN", device="cuda")   # eval mode, weights loaded with weights_only
    T, R = model.remove_reflection(image)                    # PIL image, HxWx3 uint8 array or float tensor

Inference is IBCLNModel.infer, the code path of test.py: the image is reflect-padded to a multiple of 4 and
the outputs cropped back (test.py --keep_size), so the pixels equal test.py's for the same weights and flags.
remove_reflection.py (the command), hubconf.py (torch.hub) and scripts/export_onnx.py are built on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from util.devices import resolve_device
from util.errors import UserError
from util.files import safe_torch_load
from util.images import pad_to_multiple, tensor2im, to_tensor
from util.rgb import to_rgb8

from . import fast_path, memory, tiling
from .checkpoint import load_state_dict_checked, network_path
from .config import IBCLNConfig
from .ibcln_model import N_STEPS, IBCLNModel, run_cascade

DEFAULT_WEIGHTS = os.path.join("checkpoints", "IBCLN")
DEFAULT_OVERLAP = 128
GENERATORS = ("G_T", "G_R")
WEIGHTS_SOURCE = ("run `python scripts/get_weights.py`, or download the authors' pretrained model from "
                  "github.com/JHL-HUST/IBCLN (Test > Download Pre-trained Model) and unzip it into that folder")


def weight_paths(folder: str, epoch: str = "final", ema: bool = False) -> list[str]:
    """Return the paths of the two generator files, <folder>/<epoch>_net_G_T.pth and _G_R.pth (ema: their EMA,
    _G_T_ema.pth and _G_R_ema.pth)."""
    return [network_path(folder, epoch, name, ema) for name in GENERATORS]


def check_weights(folder: str, epoch: str = "final", ema: bool = False) -> list[str]:
    """Return the two generator paths (ema: of their EMA); a missing one is a UserError naming the files and where
    to get them (for the EMA: that the run saved none)."""
    paths = weight_paths(folder, epoch)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError(f"no IBCLN weights: {' and '.join(missing)} not found (IBCLN needs "
                        f"{os.path.basename(paths[0])} and {os.path.basename(paths[1])} in {folder}); "
                        + WEIGHTS_SOURCE)
    if not ema:
        return paths
    paths = weight_paths(folder, epoch, ema=True)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError(f"no EMA weights: {' and '.join(missing)} not found: the run saved no EMA of --epoch "
                        f"{epoch} (it was trained without --ema_decay)")
    return paths


def generator_widths(state: Any, path: str) -> tuple[int, int, int]:
    """Return (input_nc, output_nc, ngf) of a generator state_dict; a file that is no generator is a UserError."""
    try:
        first, last = state["conv1.0.weight"], state["output.0.weight"]
        return int(first.shape[1]) // 3, int(last.shape[0]), int(first.shape[0])
    except (KeyError, TypeError, AttributeError, IndexError):
        raise UserError(f"{path}: not an IBCLN generator (no conv1.0.weight / output.0.weight tensors)") from None


def load_ibcln(weights: str = DEFAULT_WEIGHTS, device: str | torch.device = "auto", epoch: str = "final",
               amp: bool | str = False, channels_last: bool | str = "auto",
               tile_overlap: int = DEFAULT_OVERLAP, ema: bool = False) -> ReflectionRemover:
    """Return a ReflectionRemover with <weights>/<epoch>_net_G_T.pth and _G_R.pth loaded, in eval mode.

    weights: the folder of the two generator files (the authors' final_net_G_T.pth / final_net_G_R.pth,
    or any epoch of a model trained here: epoch="latest", "5", ...); the generator width is read from them.
    device: "auto" (the first GPU when torch sees one, else the CPU), "cpu", "cuda" or "cuda:N".
    amp: True for bf16/fp16 autocast (test.py --amp; a CPU needs bfloat16 instructions), or "bf16"/"fp16".
    channels_last: "auto" (fast_path.py's rule for inference on this device), True / "on" or False / "off".
    tile_overlap: overlap of neighbouring tiles in pixels when an image is tiled.
    ema: load the EMA weights <epoch>_net_G_T_ema.pth and _G_R_ema.pth of a run trained with --ema_decay.
    Files are loaded with weights_only (no code in them runs); a missing or foreign file is a UserError.
    """
    if tile_overlap < 0 or tile_overlap % tiling.MULTIPLE:
        raise UserError(f"tile_overlap={tile_overlap}: expected a multiple of {tiling.MULTIPLE}, 0 or more")
    paths = check_weights(weights, epoch, ema)
    torch_device = resolve_device(device)
    states = [safe_torch_load(path, map_location="cpu") for path in paths]
    widths = [generator_widths(state, path) for state, path in zip(states, paths)]
    if widths[0] != widths[1]:
        raise UserError(f"{paths[0]} and {paths[1]} have different widths (input, output, ngf) {widths[0]} and "
                        f"{widths[1]}: they are not one IBCLN model")
    input_nc, output_nc, ngf = widths[0]
    amp = ("auto" if amp else "none") if isinstance(amp, bool) else amp
    channels_last, _ = fast_path.resolve_channels_last(channels_last, torch_device, "test", amp != "none")
    # The model changes no global torch setting (cuDNN, deterministic mode): the caller's stay as they were.
    model = IBCLNModel(IBCLNConfig(gpu_ids=(torch_device.index,) if torch_device.type == "cuda" else (),
                                   input_nc=input_nc, output_nc=output_nc, ngf=ngf, amp=amp,
                                   channels_last=channels_last))
    # load_state_dict copies into the model's tensors, so they keep the memory format the model gave them.
    for name, state, path in zip(GENERATORS, states, paths):
        load_state_dict_checked(model.nets()[name], state, path)
    model.eval()
    return ReflectionRemover(model, ngf, tile_overlap, [os.path.abspath(p) for p in paths])


class ReflectionRemover:
    """IBCLN ready for inference: remove_reflection(image) -> (T, R) in the type it was given."""

    def __init__(self, model: IBCLNModel, ngf: int, tile_overlap: int = DEFAULT_OVERLAP,
                 weights: list[str] | None = None):
        self.model = model
        self.ngf = ngf
        self.tile_overlap = tile_overlap
        self.weights = weights or []
        self.last_plan: memory.TilePlan | None = None  # how the last call ran (what --tile auto decided)

    @property
    def device(self) -> torch.device:
        """Return the device the networks run on."""
        return self.model.device

    def describe(self) -> str:
        """Return one line with the device, memory format, precision and generator width."""
        amp = self.model.amp_dtype
        return (f"{self.device}, {'channels_last' if self.model.channels_last else 'NCHW'}, "
                f"{'autocast ' + str(amp).split('.')[-1] if amp else 'fp32'}, ngf {self.ngf}")

    def plan(self, batch: int, height: int, width: int, tile: int | str = "auto") -> memory.TilePlan:
        """Return how an input of this size runs: --tile auto's choice, or the tile size given (0 = whole image)."""
        padded_h, padded_w = height + (-height) % tiling.MULTIPLE, width + (-width) % tiling.MULTIPLE
        if tile == "auto":
            return memory.plan_tiles(batch, padded_h, padded_w, self.device, self.ngf, self.tile_overlap)
        tile = int(tile)
        if tile == 0:
            return memory.TilePlan(0, self.tile_overlap)
        overlap = tiling.fit_overlap(tile, self.tile_overlap)
        tiling.check_tiling(tile, overlap)
        return memory.TilePlan(tile, overlap)

    def remove_reflection(self, image: Image.Image | np.ndarray | Tensor, steps: int = N_STEPS,
                          tile: int | str = "auto", reflection: bool = True) -> tuple[Any, Any]:
        """Return (T_k, R_k) for image, each in the type and size it was given (R is None with reflection=False).

        image: a PIL image (any mode: converted as the datasets do), an HxWx3 uint8 array, or a float tensor
        (N,3,H,W) or (3,H,W) in [0,1] on any device. steps: k in 1..3, the cascade step returned (fewer steps
        run faster). tile: "auto" (tiles only when a whole-image pass would not fit in memory), a tile size in
        pixels (a multiple of 4), or 0 (never tile). reflection=False skips the last G_R pass.
        """
        if steps not in range(1, N_STEPS + 1):
            raise UserError(f"steps={steps}: expected 1, 2 or 3")
        batch, restore = self._as_batch(image)
        n, _, height, width = batch.shape
        if height < 4 or width < 4:
            raise UserError(f"image of {width}x{height} pixels is smaller than the 4x4 the network needs")
        padded = pad_to_multiple(batch, tiling.MULTIPLE)
        plan = self.plan(n, height, width, tile)
        fake_Ts, fake_Rs, plan = self._run(padded, steps, reflection, plan, retry=tile == "auto")
        self.last_plan = plan
        t = fake_Ts[steps][..., :height, :width]
        r = fake_Rs[steps][..., :height, :width] if reflection else None
        return restore(t), (restore(r) if r is not None else None)

    __call__ = remove_reflection

    def _run(self, padded: Tensor, steps: int, reflection: bool, plan: memory.TilePlan, retry: bool
             ) -> tuple[list[Tensor], list[Tensor], memory.TilePlan]:
        """Return the cascade's outputs and the plan that ran; a CUDA out-of-memory error retries with smaller tiles."""
        while True:
            try:
                fake_Ts, fake_Rs = self.model.infer(padded, steps, last_R=reflection, tile=plan.tile,
                                                    overlap=plan.overlap)
                return fake_Ts, fake_Rs, plan
            except torch.OutOfMemoryError:
                if not retry or plan.tile == memory.MIN_TILE:
                    raise UserError(f"out of GPU memory on a {padded.shape[-1]}x{padded.shape[-2]} input"
                                    + (f" with tiles of {plan.tile} px" if plan.tile else "")
                                    + ": pass a smaller --tile, or run on the CPU") from None
                torch.cuda.empty_cache()
                smaller = max(memory.MIN_TILE, tiling.half_tile(plan.tile or max(padded.shape[-2:])))
                plan = memory.TilePlan(smaller, tiling.fit_overlap(smaller, plan.overlap), plan.estimate,
                                       plan.available, plan.where + " (after running out of memory)")

    def _as_batch(self, image: Image.Image | np.ndarray | Tensor) -> tuple[Tensor, Callable[[Tensor], Any]]:
        """Return image as a float (N,3,H,W) batch, and the function that turns an output back into its type."""
        if isinstance(image, Image.Image):
            array = np.asarray(to_rgb8(image))
            return to_tensor(array)[None], lambda out: Image.fromarray(tensor2im(out))
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise UserError(f"an array image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
            return to_tensor(image)[None], tensor2im
        if isinstance(image, Tensor):
            if not image.is_floating_point() or image.dim() not in (3, 4) or image.shape[-3] != 3:
                raise UserError(f"a tensor image must be float (N,3,H,W) or (3,H,W) in [0,1], got "
                                f"{tuple(image.shape)} {image.dtype}")
            batch = image[None] if image.dim() == 3 else image
            device, dtype = image.device, image.dtype

            def restore(out: Tensor) -> Tensor:
                out = out.to(device=device, dtype=dtype).contiguous()
                return out[0] if image.dim() == 3 else out

            return batch.float(), restore
        raise UserError(f"expected a PIL image, an HxWx3 uint8 array or a float tensor, got {type(image).__name__}")

    def as_module(self, steps: int = N_STEPS) -> nn.Module:
        """Return the cascade as one nn.Module, I (N,3,H,W) -> (T_k, R_k) clamped to [0,1] (for export)."""
        return Cascade(self.model.nets()["G_T"], self.model.nets()["G_R"], steps)


class Cascade(nn.Module):
    """The whole cascade as a module: forward(I) -> (T_k, R_k) in [0,1]; H and W must be multiples of 4.

    run_cascade's arguments (the zero LSTM state as None, the heads flag) stay inside, so that tracing and
    export see one tensor in and two out.
    """

    def __init__(self, net_G_T: nn.Module, net_G_R: nn.Module, steps: int = N_STEPS):
        super().__init__()
        self.net_G_T = net_G_T
        self.net_G_R = net_G_R
        self.steps = steps

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Return (T_k, R_k) of the cascade for image, clamped to [0,1]."""
        fake_Ts, fake_Rs, _, _ = run_cascade(self.net_G_T, self.net_G_R, image, self.steps)
        return fake_Ts[-1].clamp(0, 1), fake_Rs[-1].clamp(0, 1)
