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
- ``openrr1k``: OpenRR-1k (NTIRE 2025 "reflection removal in the wild"), split folders train_800/, val_100/,
  test_100/, each blended/ (I) + transmission_layer/ (T) with the same names, directly or one level deeper under
  the split's own name (unzipping val_100.zip into val_100/). A split folder with blended/ directly in it is
  read as ``blended``. A tree of several splits is no test set (which split would be scored?); as training
  pairs it gives its train split. Sources and what could not be confirmed: docs/data.md.
- ``rrw``: RRW (Zhu et al., CVPR 2024), capture sessions <session>/GT_*/<scene>_GT.* (T) + <session>/<scene>/*
  (frames I, each paired with its scene's T), the sessions directly under the folder or the folder one session.
  GT folder and suffix are matched in any letter case. Sources: docs/data.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from util.errors import UserError

from .image_folder import make_dataset
from .pairing import few, index_by_name, pair_by_name, stem

LAYOUTS = ("testB", "blended", "sir2", "ceilnet", "openrr1k", "rrw")
LAYOUT_HELP = ("testB/ + testA1/ (this project), blended/ + transmission_layer/ (Zhang et al., ERRNet family), "
               "<scene>/m.* + <scene>/g.* (SIR², scenes possibly one level deeper), "
               "<stem>-input.* + <stem>-label1.* (CEILNet), "
               "<split>/blended/ + <split>/transmission_layer/ with splits train_800, val_100, test_100 (OpenRR-1k), "
               "<session>/GT_*/<scene>_GT.* + <session>/<scene>/* (RRW)")
# The input and ground-truth folders of the two-folder layouts.
FOLDERS = {"testB": ("testB", "testA1"), "blended": ("blended", "transmission_layer")}
# Layouts whose pairs come from two folders, so that --pair_by sorted means something.
TWO_FOLDER = (*FOLDERS, "openrr1k")
CEILNET_INPUT, CEILNET_GT = "-input", "-label1"
OPENRR_SPLIT = re.compile(r"(train|val|test)_\d+", re.IGNORECASE)
RRW_GT_SUFFIX = "_gt"


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


def _folders(root: str) -> list[os.DirEntry]:
    """Return the sub-folders of root in name order, without hidden ones and archivers' __MACOSX."""
    return sorted((e for e in os.scandir(root) if e.is_dir() and not e.name.startswith((".", "__MACOSX"))),
                  key=lambda e: e.name)


def _openrr_splits(root: str) -> dict[str, str]:
    """Return split name -> the folder holding its blended/, for the OpenRR-1k split folders under root."""
    splits = {}
    for entry in _folders(root):
        if OPENRR_SPLIT.fullmatch(entry.name):
            for folder in (entry.path, os.path.join(entry.path, entry.name)):
                if os.path.isdir(os.path.join(folder, "blended")):
                    splits[entry.name] = folder
                    break
    return splits


def _openrr_split(root: str, training: bool) -> str:
    """Return the folder of the OpenRR-1k split to read: the only one, or for training the train split."""
    splits = _openrr_splits(root)
    if not splits:
        raise UserError(f"{root}: no OpenRR-1k split folder (train_800/, val_100/, test_100/ holding blended/ + "
                        "transmission_layer/, possibly one level deeper under the split's name)")
    if len(splits) == 1:
        return next(iter(splits.values()))
    train = [name for name in splits if name.lower().startswith("train")]
    if training and len(train) == 1:
        print(f"note: {root}: an OpenRR-1k tree; its real pairs are those of {train[0]}")
        return splits[train[0]]
    if training:
        raise UserError(f"{root}: an OpenRR-1k tree with the splits {', '.join(splits)} but not one train split: "
                        "give the split folder to train on")
    test = [name for name in splits if name.lower().startswith("test")] or list(splits)
    raise UserError(f"{root}: an OpenRR-1k tree with the splits {', '.join(splits)}: give one split folder as the "
                    f"test set, e.g. {os.path.join(root, test[0])}")


def _is_gt_folder(name: str) -> bool:
    """Return True for the name of an RRW ground-truth folder: GT or GT_<session tag>, any letter case."""
    return name.lower() == "gt" or name.lower().startswith("gt_")


def _rrw_scene_of(path: str) -> str:
    """Return the scene an RRW ground truth <scene>_GT.* belongs to ('' for another file)."""
    name = stem(path)
    return name[: -len(RRW_GT_SUFFIX)] if name.lower().endswith(RRW_GT_SUFFIX) else ""


def _rrw_gt_files(session: str) -> list[str]:
    """Return the ground truths <scene>_GT.* in the GT_* folders of an RRW session folder."""
    return [p for e in _folders(session) if _is_gt_folder(e.name)
            for p in _images(e.path, recursive=False) if _rrw_scene_of(p)]


def _rrw_sessions(root: str) -> list[str]:
    """Return the RRW session folders: root itself when it has GT_* ground truths, else those among its sub-folders."""
    if _rrw_gt_files(root):
        return [root]
    return [e.path for e in _folders(root) if _rrw_gt_files(e.path)]


def detect_layout(root: str) -> str:
    """Return the layout of the test set at root (one of LAYOUTS); a UserError listing them when none matches."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: folder not found")
    if os.path.isdir(os.path.join(root, "testB")):
        return "testB"
    if os.path.isdir(os.path.join(root, "blended")):
        return "blended"
    if _openrr_splits(root):
        return "openrr1k"
    stems = [stem(p) for p in _images(root, recursive=False)]
    # Both kinds of file: a plain folder of photos, some of whose names happen to end in -input, is no CEILNet set.
    if any(s.endswith(CEILNET_INPUT) for s in stems) and any(s.endswith(CEILNET_GT) for s in stems):
        return "ceilnet"
    if _rrw_sessions(root):
        return "rrw"
    if _sir2_scenes(root):
        return "sir2"
    raise UserError(f"{root}: no known test-set layout ({os.path.join(root, 'testB')} not found, nor any other); "
                    f"it must contain one of: {LAYOUT_HELP}; photos without ground truth go in testB/")


def find_pairs(root: str, layout: str = "auto", pair_by: str = "stem",
               training: bool = False) -> tuple[str, list[Pair]]:
    """Return (layout, the set's pairs in name order); inputs without a ground truth have gt None.

    training: the pairs are real training pairs, so that an OpenRR-1k tree gives its train split (as a test
    set, a tree of several splits is an error naming them). A UserError (one line) for: no layout, no input,
    two files with one name, --pair_by sorted with folders of different sizes or on a one-folder layout, and
    a non-empty ground-truth side that pairs with nothing.
    """
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout}: expected auto or one of {', '.join(LAYOUTS)}")
    if pair_by not in ("stem", "sorted"):
        raise UserError(f"--pair_by {pair_by}: expected stem or sorted")
    if pair_by == "sorted" and layout not in TWO_FOLDER:
        raise UserError(f"--pair_by sorted: only for the two-folder layouts ({', '.join(TWO_FOLDER)}), "
                        f"not {layout} ({root})")
    if layout in FOLDERS:
        pairs = _two_folder_pairs(root, *FOLDERS[layout], pair_by)
    elif layout == "openrr1k":
        pairs = _two_folder_pairs(_openrr_split(root, training), *FOLDERS["blended"], pair_by)
    elif layout == "ceilnet":
        pairs = _suffix_pairs(root)
    elif layout == "rrw":
        pairs = _rrw_pairs(root)
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



def _rrw_pairs(root: str) -> list[Pair]:
    """Return every frame of every RRW scene paired with its scene's ground truth (None when it has none).

    A pair is named <session>_<scene>_<frame>, without <session>_ when root is the session itself.
    """
    pairs = []
    for session in _rrw_sessions(root):
        gts = index_by_name(_rrw_gt_files(session), session, _rrw_scene_of)
        scenes = {e.name: e.path for e in _folders(session) if not _is_gt_folder(e.name)}
        matched, orphans = pair_by_name(scenes, gts)
        if orphans:
            print(f"note: {len(orphans)} ground truth(s) of {session} have no scene folder and are ignored: "
                  f"{few(orphans)}")
        prefix = "" if session == root else os.path.relpath(session, root).replace(os.sep, "_") + "_"
        for scene, folder, gt in matched:
            frames = index_by_name(_images(folder, recursive=False), folder)
            pairs += [Pair(f"{prefix}{scene}_{name}", frames[name], gt) for name in sorted(frames)]
    return pairs
