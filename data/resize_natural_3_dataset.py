"""The ``resize_natural_3`` dataset (docs/method.md §6): T+R mixtures synthesized per sample, real pairs, test pairs.

Training folders under --dataroot: trainA1 (T photos), trainA2 (R photos), optionally natural_T and
natural_I (real aligned pairs with the same file names); more real pairs from the --real_pairs folders, in any
layout of data/layouts.py (an OpenRR-1k tree, RRW as distributed, ...). Test sets: testB (inputs I) and optionally
testA1 (ground truth T, paired with testB by file name without extension), or any layout of
data/layouts.py (blended/ + transmission_layer/, SIR² scene folders, CEILNet triplets, OpenRR-1k, RRW).

Every random draw of a training sample (real or synthetic, which R photo, crop, flip, synthesis
parameters) comes from one torch.Generator. In training the DataLoader hands __getitem__ a SampleKey
(data/sampling.py) and the generator is key.generator(): a pure function of (seed, epoch, rank, position),
so a sample is the same whatever --num_threads is and whichever worker builds it. A plain integer index
(a quick look at samples outside the training loader) seeds it from torch's global generator instead.
A sample also depends on nothing an earlier sample left behind: a photo whose mixtures were all rejected
is tried again when it comes up (and warned about once), rather than remembered as bad in one worker only.
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch
from PIL import Image

from util.errors import UserError
from util.images import pad_to_multiple, to_tensor

from . import synthesis
from .base_dataset import BaseDataset, align_down, apply_preprocess, draw_geometry, round_down_to_4
from .image_folder import count_by_folder, load_rgb, make_dataset
from .layouts import find_pairs
from .pairing import index_by_name, pair_by_name
from .sampling import SampleKey
from .size_policy import check_size_flags, describe_size_policy, size_policy_name

MAX_SYNTHESIS_TRIES = 20
# Training skips undecodable files with a warning, but stops once more than this share of them is bad.
MAX_BAD_SHARE = 0.1
NATURAL_CROP_FRACTION = 0.7


def downscales(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return T (3,H,W) resized to (H/2, W/2) and (H/4, W/4) (antialiased bilinear) for the multi-scale loss."""
    h, w = t.shape[-2:]
    resize = torch.nn.functional.interpolate
    half = resize(t[None], size=(h // 2, w // 2), mode="bilinear", antialias=True, align_corners=False)[0]
    quarter = resize(t[None], size=(h // 4, w // 4), mode="bilinear", antialias=True, align_corners=False)[0]
    return half, quarter


class ResizeNatural3Dataset(BaseDataset):
    """Synthetic T+R mixtures (real pairs with probability --natural_prob) for training; testB[/testA1] for testing."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Return the parser with the dataset's flags (epoch length, synthesis range, test sizing)."""
        parser.add_argument("--dataset_size", type=int, default=4000,
                            help="samples per training epoch; 0 = the number of trainA1 images")
        parser.add_argument("--t_sampling", type=str, default="cyclic", choices=["cyclic", "uniform"],
                            help="which trainA1 photo a training sample uses: cyclic = sample i uses photo i modulo "
                                 "their number, in sorted order (released; with --dataset_size below the number of "
                                 "photos the last ones are never used); uniform = a photo drawn uniformly from the "
                                 "whole folder for every sample (reproducible under --seed)")
        parser.add_argument("--sigma_min", type=float, default=2.0, help="smallest reflection blur sigma")
        parser.add_argument("--sigma_max", type=float, default=5.0, help="largest reflection blur sigma")
        parser.add_argument("--natural_prob", type=float, default=0.3,
                            help="probability that a training sample is a real pair (when there are real pairs: "
                                 "natural_T/natural_I, --real_pairs)")
        if is_train:
            parser.add_argument("--real_pairs", type=str, default="", metavar="DIR[,DIR...]",
                                help="more real training pairs, drawn with natural_T/natural_I: folders in any "
                                     "test-set layout (docs/data.md), e.g. an OpenRR-1k tree (its train split) or "
                                     "RRW as distributed")
            parser.add_argument("--no_natural", action="store_true",
                                help="do not read natural_T/natural_I under --dataroot (with --real_pairs: train on "
                                     "those real pairs instead)")
        if not is_train:  # test-time sizing; training validates with its --val_* twins (options/train_options.py)
            parser.add_argument("--max_size", type=int, default=0,
                                help="downscale inputs whose longer side exceeds this (aspect kept, Lanczos) before "
                                     "the multiple-of-4 step; outputs and metrics are then at the reduced size. "
                                     "0 = never")
            parser.add_argument("--keep_size", action="store_true",
                                help="reflect-pad inputs to a multiple of 4 and crop outputs back, instead of "
                                     "resizing them down to a multiple of 4 as the released code did")
            parser.add_argument("--align", type=int, default=0, metavar="N",
                                help="resize input and ground truth to H//N*N x W//N*N (bicubic, PIL's default) "
                                     "before inference and scoring, as the ERRNet-family test loaders do with N=32 "
                                     "(docs/protocol.md); 0 = off")
        return parser

    @staticmethod
    def check_test_options(opt: argparse.Namespace, prefix: str = "--") -> None:
        """Raise a UserError for an --align that is not a multiple of 4, or one given with --keep_size."""
        check_size_flags(opt.align, opt.keep_size, prefix)

    def __init__(self, opt: argparse.Namespace):
        super().__init__(opt)
        if not os.path.isdir(opt.dataroot):
            raise UserError(f"--dataroot {opt.dataroot}: folder not found")
        self.is_train = opt.is_train
        if self.is_train:
            self._init_train(opt)
        else:
            self._init_test(opt)

    # ----- folders -------------------------------------------------------------------------------
    def _required(self, sub: str, what: str) -> list[str]:
        folder = os.path.join(self.root, sub)
        if not os.path.isdir(folder):
            raise UserError(f"{folder}: folder not found; it must contain {what}")
        paths = make_dataset(folder, self.opt.max_dataset_size)
        if not paths:
            raise UserError(f"{folder}: no images found; it must contain {what}")
        print(count_by_folder(folder, paths))
        return paths

    def _init_train(self, opt: argparse.Namespace) -> None:
        if opt.sigma_min <= 0 or opt.sigma_max < opt.sigma_min:
            raise UserError(f"--sigma_min {opt.sigma_min} --sigma_max {opt.sigma_max}: need 0 < min <= max")
        self.t_paths = self._required("trainA1", "transmission photos (T)")
        self.r_paths = self._required("trainA2", "reflection photos (R)")
        nat_t, nat_i = os.path.join(self.root, "natural_T"), os.path.join(self.root, "natural_I")
        self.natural_pairs: list[tuple[str, str]] = []
        if os.path.isdir(nat_t) and os.path.isdir(nat_i) and not getattr(opt, "no_natural", False):
            self.natural_pairs = pair_real(make_dataset(nat_t, opt.max_dataset_size),
                                              make_dataset(nat_i, opt.max_dataset_size), nat_t, nat_i)
        self.natural_pairs += read_real_pairs(getattr(opt, "real_pairs", ""), opt.max_dataset_size)
        if not self.natural_pairs:
            print(f"note: no real pairs (natural_T/natural_I) under {self.root}: training on synthetic mixtures only")
        self.length = opt.dataset_size if opt.dataset_size > 0 else len(self.t_paths)
        unused = len(self.t_paths) - self.length
        if opt.t_sampling == "cyclic" and unused > 0:
            print(f"note: --dataset_size {self.length} is below the {len(self.t_paths)} photos of trainA1: sample i "
                  f"uses photo i in sorted order (as released), so the last {unused} are never used; "
                  "--t_sampling uniform draws from all of them")
        self.bad_files: set[str] = set()  # files warned about in this run (main process, see note_bad_files)
        self._skipped_here: dict[str, str] = {}  # file -> reason, found by this process (a worker's own copy)
        self._new_reports: list[str] = []
        self.n_files = len(self.t_paths) + len(self.r_paths) + 2 * len(self.natural_pairs)

    def _load_train(self, path: str) -> Image.Image | None:
        """Return the decoded training image, or None (reported with the sample) when it cannot be used."""
        if path in self._skipped_here:
            return None
        try:
            return load_rgb(path)
        except UserError as err:
            self._skip(path, str(err))
            return None

    def _skip(self, path: str, reason: str) -> None:
        """Remember that path cannot be decoded here and report it with the sample being built."""
        self._skipped_here[path] = reason
        self._report(path, reason)

    def _report(self, path: str, reason: str) -> None:
        """Report path as unusable with the sample being built (note_bad_files warns once per run)."""
        self._new_reports.append(f"{path}\t{reason}")

    def note_bad_files(self, reports: list[str]) -> None:
        """Warn once per run for each newly reported bad file; a UserError once more than 10% of the files are bad.

        Called in the main process with the "bad_files" of every batch. DataLoader workers are separate
        processes, re-created each epoch, that share nothing: each keeps its own list of files to skip and
        only reports what it found with the sample, so that the one warning per file and the 10% limit are
        counted here, once per run, whatever --num_threads is.
        """
        for report in reports:
            for line in filter(None, report.split("\n")):
                path, reason = line.split("\t", 1)
                if path in self.bad_files:
                    continue
                self.bad_files.add(path)
                warnings.warn(f"skipping a training image: {reason}", stacklevel=2)
        if len(self.bad_files) > MAX_BAD_SHARE * self.n_files:
            raise UserError(f"{len(self.bad_files)} of {self.n_files} training images cannot be decoded or used "
                            f"(more than {MAX_BAD_SHARE:.0%}), e.g. {sorted(self.bad_files)[0]}; fix or remove them")

    def _init_test(self, opt: argparse.Namespace) -> None:
        # Any distributed layout (data/layouts.py); test.py runs inputs without a ground truth too.
        self.check_test_options(opt)
        layout, pair_by = getattr(opt, "layout", "auto"), getattr(opt, "pair_by", "stem")
        self.layout, self.pairs = find_pairs(self.root, layout, pair_by)
        self.pairs = self.pairs[: int(min(opt.max_dataset_size, len(self.pairs)))]
        self.length = len(self.pairs)

    def size_policy(self) -> str:
        """Return one line saying at which size test images are run and scored (--keep_size, --align, --max_size)."""
        return describe_size_policy(self.opt.align, self.opt.keep_size, self.opt.max_size)

    def size_policy_name(self) -> str:
        """Return the short name of the size policy: released, original or align<N>, after max_size<N>+."""
        return size_policy_name(self.opt.align, self.opt.keep_size, self.opt.max_size)

    def only_with_ground_truth(self) -> list[str]:
        """Drop the test pairs that have no ground truth (for evaluation); return their names."""
        dropped = [p.name for p in self.pairs if p.gt is None]
        self.pairs = [p for p in self.pairs if p.gt is not None]
        self.length = len(self.pairs)
        return dropped

    def __len__(self) -> int:
        """Return --dataset_size (training) or the number of test inputs (testing)."""
        return self.length

    # ----- samples -------------------------------------------------------------------------------
    def __getitem__(self, index: int | SampleKey) -> dict:
        """Return a sample dict: T, I, R, T2, T4, alpha, isNatural, I_path, T_path (and has_gt, orig_size at test)."""
        if not self.is_train:
            return self._test_item(int(index))
        if isinstance(index, SampleKey):
            gen = index.generator()
            index = index.index
        else:
            gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self._new_reports = []
        sample = None
        if self.natural_pairs and float(torch.rand(1, generator=gen)) < self.opt.natural_prob:
            sample = self._natural_item(gen)
        if sample is None:
            sample = self._synthetic_item(index, gen)
        sample["bad_files"] = "\n".join(self._new_reports)
        return sample

    def _natural_item(self, gen: torch.Generator) -> dict | None:
        pick = int(torch.randint(len(self.natural_pairs), (1,), generator=gen))
        t_path, i_path = self.natural_pairs[pick]
        t_img, i_img = self._load_train(t_path), self._load_train(i_path)
        if t_img is None or i_img is None:
            return None
        if t_img.size != i_img.size:
            raise UserError(f"real pair of different sizes: {t_path} is {t_img.size}, {i_path} is {i_img.size}")
        w, h = t_img.size
        if min(w, h) < 4:
            raise UserError(f"real pair {t_path}, {i_path}: {w}x{h} pixels is smaller than the 4x4 the network needs")
        # The side is rounded down to a multiple of 4 here, so that --preprocess none does not resample the
        # window (apply_preprocess would otherwise resize e.g. a 35-pixel crop to 32).
        side = max(4, int(NATURAL_CROP_FRACTION * min(w, h)) // 4 * 4)
        y = int(torch.randint(h - side + 1, (1,), generator=gen))
        x = int(torch.randint(w - side + 1, (1,), generator=gen))
        box = (x, y, x + side, y + side)
        geometry = draw_geometry(gen, self.opt.no_flip)
        t_img = apply_preprocess(t_img.crop(box), self.opt, geometry)
        i_img = apply_preprocess(i_img.crop(box), self.opt, geometry)
        t = to_tensor(t_img)
        t2, t4 = downscales(t)
        return {"T": t, "I": to_tensor(i_img), "R": torch.zeros_like(t), "T2": t2, "T4": t4,
                "alpha": torch.tensor(1.0), "isNatural": torch.tensor(True), "I_path": i_path, "T_path": t_path}

    def _synthetic_item(self, index: int, gen: torch.Generator) -> dict:
        if self.opt.t_sampling == "uniform":
            index = int(torch.randint(len(self.t_paths), (1,), generator=gen))
        for offset in range(len(self.t_paths)):  # an unusable T is replaced by the next photo
            t_path = self.t_paths[(index + offset) % len(self.t_paths)]
            t_img = self._load_train(t_path)
            sample = None if t_img is None else self._mixture(t_path, t_img, gen)
            if sample is not None:
                return sample
        raise UserError(f"{os.path.join(self.root, 'trainA1')}: none of its images can be decoded or mixed")

    def _mixture(self, t_path: str, t_img: Image.Image, gen: torch.Generator) -> dict | None:
        """Return a synthetic sample on t_img, or None (t_path skipped and reported) if every mixture is rejected."""
        geometry = draw_geometry(gen, self.opt.no_flip)
        t_img = apply_preprocess(t_img, self.opt, geometry)
        t = to_tensor(t_img)
        height, width = t.shape[-2:]
        for _ in range(MAX_SYNTHESIS_TRIES):
            r_path = self.r_paths[int(torch.randint(len(self.r_paths), (1,), generator=gen))]
            r_img = self._load_train(r_path)
            if r_img is None:
                continue
            r_img = apply_preprocess(r_img, self.opt, draw_geometry(gen, True))
            if geometry.flip:
                r_img = r_img.transpose(Image.FLIP_LEFT_RIGHT)
            if r_img.size != t_img.size:
                r_img = r_img.resize(t_img.size, Image.BICUBIC)
            r = to_tensor(r_img)
            params = synthesis.draw_params(height, width, gen, self.opt.sigma_min, self.opt.sigma_max)
            r_out, i = synthesis.synthesize(t, r, params.sigma, params.att, params.alpha, params.offset)
            if not synthesis.is_rejected(t, r, r_out, i):
                t2, t4 = downscales(t)
                return {"T": t, "I": i, "R": r_out, "T2": t2, "T4": t4, "alpha": torch.tensor(params.alpha),
                        "isNatural": torch.tensor(False), "I_path": t_path, "T_path": t_path}
        self._report(t_path, f"{t_path}: no usable mixture after {MAX_SYNTHESIS_TRIES} random reflections (each was "
                           "rejected as unrealistic: the photo is too dark, or much brighter than the reflection "
                           "photos); remove it from trainA1 or add brighter photos to trainA2")
        return None

    def _test_item(self, index: int) -> dict:
        name, i_path, t_path = self.pairs[index].name, self.pairs[index].input, self.pairs[index].gt
        i_img = load_rgb(i_path)
        has_gt = t_path is not None
        t_img = load_rgb(t_path) if has_gt else Image.new("RGB", i_img.size)
        if t_img.size != i_img.size:
            raise UserError(f"ground truth {t_path} is {t_img.size[0]}x{t_img.size[1]} but input {i_path} is "
                            f"{i_img.size[0]}x{i_img.size[1]}; a test pair must have the same size")
        if self.opt.max_size > 0 and max(i_img.size) > self.opt.max_size:
            scale = self.opt.max_size / max(i_img.size)
            size = (max(1, round(i_img.size[0] * scale)), max(1, round(i_img.size[1] * scale)))
            i_img, t_img = i_img.resize(size, Image.LANCZOS), t_img.resize(size, Image.LANCZOS)
        sample: dict = {}
        if self.opt.align:
            try:
                i_img, t_img = align_down(i_img, self.opt.align), align_down(t_img, self.opt.align)
            except UserError as err:
                raise UserError(f"{i_path}: {err} (--align {self.opt.align})") from None
            i, t = to_tensor(i_img), to_tensor(t_img)
        elif self.opt.keep_size:
            w, h = i_img.size
            if w < 4 or h < 4:
                raise UserError(f"{i_path}: image of {w}x{h} pixels is smaller than the 4x4 the network needs")
            i, t = pad_to_multiple(to_tensor(i_img), 4), pad_to_multiple(to_tensor(t_img), 4)
            sample["orig_size"] = (h, w)
        else:
            try:
                i_img, t_img = round_down_to_4(i_img), round_down_to_4(t_img)
            except UserError as err:
                raise UserError(f"{i_path}: {err}") from None
            i, t = to_tensor(i_img), to_tensor(t_img)
        half, quarter = downscales(t)
        sample.update({"T": t, "I": i, "R": torch.zeros_like(i), "T2": half, "T4": quarter,
                       "alpha": torch.tensor(1.0), "isNatural": torch.tensor(True), "has_gt": torch.tensor(has_gt),
                       "I_path": i_path, "T_path": t_path or "", "name": name})
        return sample




def pair_real(t_paths: list[str], i_paths: list[str], t_folder: str, i_folder: str) -> list[tuple[str, str]]:
    """Return (T, I) path pairs with the same name; unpaired or ambiguous names are a UserError listing them.

    The rule of the test pairs (data/pairing.py), the name being the path under the folder without
    extension, since training folders are read recursively: natural_T/x.png pairs with natural_I/x.jpg.
    """
    why = "real pairs are paired by it"
    t_names = index_by_name(t_paths, t_folder, lambda p: os.path.splitext(os.path.relpath(p, t_folder))[0], why)
    i_names = index_by_name(i_paths, i_folder, lambda p: os.path.splitext(os.path.relpath(p, i_folder))[0], why)
    pairs, only_i = pair_by_name(t_names, i_names)
    only_t = [name for name, _, i_path in pairs if i_path is None]
    if only_t or only_i:
        parts = []
        for folder, names, named in ((t_folder, only_t, t_names), (i_folder, only_i, i_names)):
            if names:
                files = [os.path.relpath(named[n], folder) for n in names[:20]]
                parts.append(f"only in {folder}: {', '.join(files)}")
        raise UserError("real pairs must have the same file names (extension aside) in natural_T and natural_I; "
                        + "; ".join(parts))
    return [(t_path, i_path) for _, t_path, i_path in pairs]


def read_real_pairs(folders: str, max_size: float) -> list[tuple[str, str]]:
    """Return the (T, I) pairs of the --real_pairs folders (comma-separated, any layout of data/layouts.py).

    An OpenRR-1k tree gives its train split; inputs without a ground truth are left out (with a note); at most
    max_size pairs are taken from each folder, in name order.
    """
    pairs: list[tuple[str, str]] = []
    for root in filter(None, (folder.strip() for folder in folders.split(","))):
        if not os.path.isdir(root):
            raise UserError(f"--real_pairs {root}: folder not found")
        layout, found = find_pairs(root, training=True)
        paired = [(p.gt, p.input) for p in found if p.gt is not None]
        if not paired:
            raise UserError(f"--real_pairs {root}: no input has a ground truth ({layout} layout)")
        paired = paired[: int(min(max_size, len(paired)))]
        unpaired = sum(p.gt is None for p in found)
        print(f"{root}: {len(paired)} real pair(s) ({layout} layout)"
              + (f"; {unpaired} input(s) without a ground truth left out" if unpaired else ""))
        pairs += paired
    return pairs
