"""Test sets as they are distributed: detect a folder's layout and list its (input, ground truth) pairs.

Layouts (checked against the public loaders that read them):

- ``testB``: this project's testB/ (inputs I) + optional testA1/ (ground truth T), paired by file name
  without extension (or, with --pair_by sorted, by sorted order as the released code did, docs/method.md §6).
- ``blended``: blended/ (I) + transmission_layer/ (T), same file names: Zhang et al.'s real data, Real20,
  Nature and the SIR² repackagings. Checked: Vandermode/ERRNet data/reflect_dataset.py (CEILTestDataset),
  mingcv/YTMT-Strategy data/sirs_dataset.py + test_sirs.py (SIR2/{Postcard,SolidObject,WildScene}Dataset,
  Nature) and mingcv/DSRNet data/sirs_dataset.py (DSRTestDataset, SIRTestDataset): all list blended/ and
  open transmission_layer/<same name>.
- ``sir2``: SIR²'s original per-scene folders <scene>/m.* (mixture) + <scene>/g.* (ground truth), the scenes
  directly under the set folder or one level deeper (e.g. withgt/<scene>/). None of the four loaders reads
  this layout (they use the blended/ repackaging), so it follows the SIR² download's own naming.
- ``ceilnet``: CEILNet triplets <stem>-input.* (I) + <stem>-label1.* (T; -label2 is the reflection) in one
  folder. Checked: fqnchina/CEILNet evaluation_reflection.lua (lists files containing '-input.png') and
  its testdata_reflection_synthetic_table2/ folder (<stem>-input.png, -label1.png, -label2.png).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from util.errors import UserError

from .image_folder import make_dataset
from .pairing import few, index_by_name, pair_by_name, stem

LAYOUTS = ("testB", "blended", "sir2", "ceilnet")
LAYOUT_HELP = ("testB/ + testA1/ (this project), blended/ + transmission_layer/ (Zhang et al., ERRNet family), "
               "<scene>/m.* + <scene>/g.* (SIR², scenes possibly one level deeper), "
               "<stem>-input.* + <stem>-label1.* (CEILNet)")
# The input and ground-truth folders of the two-folder layouts.
FOLDERS = {"testB": ("testB", "testA1"), "blended": ("blended", "transmission_layer")}
CEILNET_INPUT, CEILNET_GT = "-input", "-label1"


@dataclass(frozen=True)
class Pair:
    """One test image: its result name, the input path, and the ground-truth path (None when there is none)."""

    name: str
    input: str
    gt: str | None


def _images(folder: str, recursive: bool = True) -> list[str]:
    return make_dataset(folder, recursive=recursive) if os.path.isdir(folder) else []


def _sir2_scenes(root: str) -> list[str]:
    """Return the folders, one or two levels under root, that hold a mixture image m.*."""
    scenes = []
    for top in sorted(os.scandir(root), key=lambda e: e.name):
        if not top.is_dir():
            continue
        for folder in [top.path, *sorted(e.path for e in os.scandir(top.path) if e.is_dir())]:
            if any(stem(p) == "m" for p in _images(folder, recursive=False)):
                scenes.append(folder)
    return scenes


def detect_layout(root: str) -> str:
    """Return the layout of the test set at root (one of LAYOUTS); a UserError listing them when none matches."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: folder not found")
    if os.path.isdir(os.path.join(root, "testB")):
        return "testB"
    if os.path.isdir(os.path.join(root, "blended")):
        return "blended"
    stems = [stem(p) for p in _images(root, recursive=False)]
    # Both kinds of file: a plain folder of photos, some of whose names happen to end in -input, is no CEILNet set.
    if any(s.endswith(CEILNET_INPUT) for s in stems) and any(s.endswith(CEILNET_GT) for s in stems):
        return "ceilnet"
    if _sir2_scenes(root):
        return "sir2"
    raise UserError(f"{root}: no known test-set layout ({os.path.join(root, 'testB')} not found, nor any other); "
                    f"it must contain one of: {LAYOUT_HELP}; photos without ground truth go in testB/")


def find_pairs(root: str, layout: str = "auto", pair_by: str = "stem") -> tuple[str, list[Pair]]:
    """Return (layout, the set's pairs in name order); inputs without a ground truth have gt None.

    A UserError (one line) for: no layout, no input, two files with one name, --pair_by sorted with folders
    of different sizes or on a one-folder layout, and a non-empty ground-truth side that pairs with nothing.
    """
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout}: expected auto or one of {', '.join(LAYOUTS)}")
    if pair_by not in ("stem", "sorted"):
        raise UserError(f"--pair_by {pair_by}: expected stem or sorted")
    if pair_by == "sorted" and layout not in FOLDERS:
        raise UserError(f"--pair_by sorted: only for the two-folder layouts ({', '.join(FOLDERS)}), "
                        f"not {layout} ({root})")
    if layout in FOLDERS:
        pairs = _two_folder_pairs(root, *FOLDERS[layout], pair_by)
    elif layout == "ceilnet":
        pairs = _suffix_pairs(root)
    else:
        pairs = _sir2_pairs(root)
    if not pairs:
        raise UserError(f"{root}: no input images found for the {layout} layout ({LAYOUT_HELP})")
    names: dict[str, str] = {}
    for pair in pairs:
        if pair.name in names:
            raise UserError(f"{root}: {names[pair.name]} and {pair.input} share the name '{pair.name}'; test "
                            "images are paired and their results named by it: rename one")
        names[pair.name] = pair.input
    return layout, sorted(pairs, key=lambda p: p.name)


def _two_folder_pairs(root: str, input_sub: str, gt_sub: str, pair_by: str) -> list[Pair]:
    input_folder, gt_folder = os.path.join(root, input_sub), os.path.join(root, gt_sub)
    if not os.path.isdir(input_folder):
        raise UserError(f"{input_folder}: folder not found; it must contain the input images with reflections (I)")
    inputs, gts = _images(input_folder), _images(gt_folder)
    if not inputs:
        raise UserError(f"{input_folder}: no images found; it must contain the input images with reflections (I)")
    by_name, gt_by_name = index_by_name(inputs, input_folder), index_by_name(gts, gt_folder)
    if pair_by == "sorted":
        if gts and len(gts) != len(inputs):
            raise UserError(f"--pair_by sorted: {input_folder} has {len(inputs)} images but {gt_folder} has "
                            f"{len(gts)}; pairing by sorted order needs the same number")
        return [Pair(stem(i), i, gts[k] if gts else None) for k, i in enumerate(inputs)]
    pairs, orphans = pair_by_name(by_name, gt_by_name)
    if gts and len(orphans) == len(gts):
        raise UserError(f"no input in {input_folder} has a ground truth of the same name (without extension) in "
                        f"{gt_folder}: e.g. inputs {_few_files(inputs)}; ground truths {_few_files(gts)}; rename them, "
                        "or pass --pair_by sorted to pair them by sorted order")
    if orphans:
        files = sorted(os.path.basename(gt_by_name[name]) for name in orphans)
        print(f"note: {len(orphans)} ground-truth image(s) in {gt_folder} have no input in {input_folder} and are "
              f"ignored: {', '.join(files[:10])}")
    return [Pair(*pair) for pair in pairs]


def _few_files(paths: list[str]) -> str:
    return few(os.path.basename(p) for p in paths)


def _suffix_pairs(root: str) -> list[Pair]:
    files = _images(root, recursive=False)
    inputs = index_by_name([p for p in files if stem(p).endswith(CEILNET_INPUT)], root,
                           lambda p: stem(p)[: -len(CEILNET_INPUT)])
    gts = index_by_name([p for p in files if stem(p).endswith(CEILNET_GT)], root, lambda p: stem(p)[: -len(CEILNET_GT)])
    return [Pair(*pair) for pair in pair_by_name(inputs, gts)[0]]


def _scene_file(scene: str, name: str) -> str | None:
    found = [p for p in _images(scene, recursive=False) if stem(p) == name]
    if len(found) > 1:
        raise UserError(f"{scene}: {', '.join(os.path.basename(p) for p in found)} are all named '{name}'; keep one")
    return found[0] if found else None


def _sir2_pairs(root: str) -> list[Pair]:
    pairs = []
    for scene in _sir2_scenes(root):
        name = os.path.relpath(scene, root).replace(os.sep, "_")
        pairs.append(Pair(name, _scene_file(scene, "m"), _scene_file(scene, "g")))
    return pairs

