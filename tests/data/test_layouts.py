"""Test sets in their distributed layouts (data/layouts.py): detection, pairing, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import make_openrr_tree, make_rrw_tree, random_image, read_rgb, write_png

from data.layouts import detect_layout, find_pairs
from data.resize_natural_3_dataset import ResizeNatural3Dataset
from options.test_options import TestOptions
from util.errors import UserError


def make_layout(root: Path, layout: str, nested: bool = False) -> Path:
    """Write a tiny set in `layout`: images a and b with ground truth, c without; return root.

    Input k is random_image(k), its ground truth random_image(10 + k), so a test can tell which file went where.
    """
    for k, name in enumerate(("a", "b", "c")):
        gt = k < 2
        if layout == "testB":
            write_png(random_image(k), root / "testB" / f"{name}.png")
            if gt:
                write_png(random_image(10 + k), root / "testA1" / f"{name}.png")
        elif layout == "blended":
            write_png(random_image(k), root / "blended" / f"{name}.png")
            if gt:
                write_png(random_image(10 + k), root / "transmission_layer" / f"{name}.png")
        elif layout == "sir2":
            scene = root / "withgt" / name if nested else root / name
            write_png(random_image(k), scene / "m.png")
            write_png(random_image(20 + k), scene / "r.png")  # the reflection, not used
            if gt:
                write_png(random_image(10 + k), scene / "g.png")
        else:
            write_png(random_image(k), root / f"{name}-input.png")
            write_png(random_image(20 + k), root / f"{name}-label2.png")  # the reflection, not used
            if gt:
                write_png(random_image(10 + k), root / f"{name}-label1.png")
    return root


LAYOUT_CASES = [("testB", False), ("blended", False), ("sir2", False), ("sir2", True), ("ceilnet", False)]


@pytest.mark.parametrize(("layout", "nested"), LAYOUT_CASES)
def test_every_layout_is_detected_and_paired(tmp_path: Path, layout: str, nested: bool) -> None:
    root = make_layout(tmp_path / "set", layout, nested)
    assert detect_layout(str(root)) == layout
    found, pairs = find_pairs(str(root))
    assert found == layout
    prefix = "withgt_" if nested else ""
    assert [p.name for p in pairs] == [f"{prefix}a", f"{prefix}b", f"{prefix}c"]
    for k, pair in enumerate(pairs):
        np.testing.assert_array_equal(read_rgb(pair.input), random_image(k))
        if k < 2:
            np.testing.assert_array_equal(read_rgb(pair.gt), random_image(10 + k))
        else:
            assert pair.gt is None


@pytest.mark.parametrize(("layout", "nested"), LAYOUT_CASES)
def test_the_test_dataset_reads_every_layout(tmp_path: Path, layout: str, nested: bool) -> None:
    root = make_layout(tmp_path / "set", layout, nested)
    opt = TestOptions().parse(["--dataroot", str(root), "--gpu_ids", "-1", "--keep_size"], save=False)
    dataset = ResizeNatural3Dataset(opt)
    assert dataset.layout == layout and len(dataset) == 3
    first, last = dataset[0], dataset[2]
    assert first["name"] == ("withgt_a" if nested else "a") and bool(first["has_gt"]) and not bool(last["has_gt"])
    gt = (first["T"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(gt, random_image(10))
    assert dataset.only_with_ground_truth() == [last["name"]] and len(dataset) == 2


def test_a_plain_photo_folder_is_not_taken_for_a_ceilnet_set(tmp_path: Path) -> None:
    """shared/real_photos-like: some names end in -input, none in -label1: no layout, and the error says testB/."""
    write_png(random_image(1), tmp_path / "photos" / "glass-input.png")
    write_png(random_image(2), tmp_path / "photos" / "window.png")
    with pytest.raises(UserError, match=r"no known test-set layout.*photos without ground truth go in testB/"):
        find_pairs(str(tmp_path / "photos"))


def test_forced_layout_and_no_layout(tmp_path: Path) -> None:
    root = make_layout(tmp_path / "set", "ceilnet")
    with pytest.raises(UserError, match="blended.*folder not found"):
        find_pairs(str(root), layout="blended")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserError) as err:
        find_pairs(str(tmp_path / "empty"))
    message = str(err.value)
    assert "\n" not in message and "no known test-set layout" in message
    for layout_hint in ("testB/ + testA1/", "blended/ + transmission_layer/", "<scene>/m.*", "<stem>-input.*"):
        assert layout_hint in message


def test_two_files_with_one_name_are_an_error(tmp_path: Path) -> None:
    root = make_layout(tmp_path / "set", "sir2")
    write_png(random_image(5), root / "a" / "m.jpg")
    with pytest.raises(UserError, match="m.jpg, m.png are all named 'm'"):
        find_pairs(str(root))
    root = make_layout(tmp_path / "set2", "blended")
    write_png(random_image(5), root / "transmission_layer" / "a.jpg")
    with pytest.raises(UserError, match="transmission_layer: a.jpg and a.png share the name 'a'"):
        find_pairs(str(root))


# ----- ground truths that pair with nothing ---------------------------------------------


def renamed_set(root: Path, inputs: int = 3, gts: int = 3) -> Path:
    """Write testB/in_k.png and testA1/gt_k.png: the same pictures under names that never match."""
    for k in range(inputs):
        write_png(random_image(k), root / "testB" / f"in_{k}.png")
    for k in range(gts):
        write_png(random_image(10 + k), root / "testA1" / f"gt_{k}.png")
    return root


def test_ground_truths_pairing_with_no_input_are_an_error_naming_both_sides(tmp_path: Path) -> None:
    root = renamed_set(tmp_path / "set")
    with pytest.raises(UserError) as err:
        find_pairs(str(root))
    message = str(err.value)
    assert "\n" not in message and "in_0.png" in message and "gt_0.png" in message and "--pair_by sorted" in message


def test_pair_by_sorted_pairs_in_sorted_order_and_refuses_different_counts(tmp_path: Path) -> None:
    root = renamed_set(tmp_path / "set")
    _, pairs = find_pairs(str(root), pair_by="sorted")
    assert [(p.name, Path(p.gt).name) for p in pairs] == [("in_0", "gt_0.png"), ("in_1", "gt_1.png"),
                                                          ("in_2", "gt_2.png")]
    with pytest.raises(UserError, match="has 4 images but .*testA1 has 3"):
        find_pairs(str(renamed_set(tmp_path / "other", inputs=4)), pair_by="sorted")
    with pytest.raises(UserError, match="--pair_by sorted: only for the two-folder layouts"):
        find_pairs(str(make_layout(tmp_path / "ceil", "ceilnet")), pair_by="sorted")


def test_a_partial_ground_truth_folder_is_still_fine(tmp_path: Path, capsys) -> None:
    root = make_layout(tmp_path / "set", "testB")
    write_png(random_image(9), root / "testA1" / "orphan.png")
    _, pairs = find_pairs(str(root))
    assert [p.gt is not None for p in pairs] == [True, True, False]
    assert "orphan.png" in capsys.readouterr().out


# ----- the newer real data sets as their authors distribute them (docs/data.md) -------------------------


def test_an_openrr1k_tree_is_detected_and_each_split_is_a_test_set(tmp_path: Path) -> None:
    root = make_openrr_tree(tmp_path / "OpenRR-1k")
    assert detect_layout(str(root)) == "openrr1k"
    with pytest.raises(UserError) as err:  # which split would be scored? the error says how to choose
        find_pairs(str(root))
    message = str(err.value)
    assert "\n" not in message and "test_100, train_800, val_100" in message
    assert str(root / "test_100") in message
    layout, pairs = find_pairs(str(root / "test_100"))  # test_100/test_100/blended, as unzipped
    assert layout == "openrr1k" and [p.name for p in pairs] == ["test_0001", "test_0002"]
    assert pairs[0].input == str(root / "test_100" / "test_100" / "blended" / "test_0001.jpg")
    assert pairs[0].gt == str(root / "test_100" / "test_100" / "transmission_layer" / "test_0001.jpg")
    layout, pairs = find_pairs(str(root / "val_100"))  # val_100/blended directly: the blended layout
    assert layout == "blended" and [p.name for p in pairs] == ["val_0001", "val_0002"]
    assert all(p.gt for p in pairs)
    with pytest.raises(UserError, match="no OpenRR-1k split folder"):
        find_pairs(str(root / "val_100" / "blended"), layout="openrr1k")


def test_an_openrr1k_tree_gives_its_train_split_as_training_pairs(tmp_path: Path, capsys) -> None:
    root = make_openrr_tree(tmp_path / "OpenRR-1k")
    layout, pairs = find_pairs(str(root), training=True)
    assert layout == "openrr1k" and [p.name for p in pairs] == ["train_0001", "train_0002", "train_0003"]
    assert all(Path(p.gt).parent == root / "train_800" / "train_800" / "transmission_layer" for p in pairs)
    assert "train_800" in capsys.readouterr().out
    (root / "Train_900" / "blended").mkdir(parents=True)  # two train splits (any letter case): no guess
    with pytest.raises(UserError, match="not one train split"):
        find_pairs(str(root), training=True)


def test_an_rrw_tree_pairs_every_frame_with_its_scene_ground_truth(tmp_path: Path, capsys) -> None:
    root = make_rrw_tree(tmp_path / "RRW")
    assert detect_layout(str(root)) == "rrw"
    layout, pairs = find_pairs(str(root))
    assert layout == "rrw"
    assert [p.name for p in pairs] == [
        "ref_hf3_nogt_scene_frame_000030", "ref_hf3_wild_out1_frame_000030", "ref_hf3_wild_out1_frame_000055",
        "ref_hf3_wild_out2_frame_000030", "reflection_camera1_room_frame_000030",
        "reflection_camera1_room_frame_000055"]
    by_name = {p.name: p for p in pairs}
    assert by_name["ref_hf3_nogt_scene_frame_000030"].gt is None
    assert by_name["ref_hf3_wild_out1_frame_000055"].gt == str(root / "ref_hf3" / "GT_hf3" / "wild_out1_GT.png")
    assert by_name["reflection_camera1_room_frame_000030"].gt == str(
        root / "reflection_camera1" / "gt_CAMERA1" / "room_gt.png")
    np.testing.assert_array_equal(read_rgb(by_name["ref_hf3_wild_out2_frame_000030"].gt), random_image(201))
    assert "orphan" in capsys.readouterr().out  # a ground truth without frames is named, not scored
    layout, pairs = find_pairs(str(root / "reflection_camera1"))  # one unzipped session on its own
    assert layout == "rrw" and [p.name for p in pairs] == ["room_frame_000030", "room_frame_000055"]


def test_the_test_dataset_reads_the_newer_real_sets(tmp_path: Path) -> None:
    openrr = make_openrr_tree(tmp_path / "OpenRR-1k")
    rrw = make_rrw_tree(tmp_path / "RRW")
    for root, layout, count in ((openrr / "test_100", "openrr1k", 2), (rrw, "rrw", 6)):
        opt = TestOptions().parse(["--dataroot", str(root), "--gpu_ids", "-1", "--keep_size"], save=False)
        dataset = ResizeNatural3Dataset(opt)
        assert dataset.layout == layout and len(dataset) == count
        first = dataset[1]
        gt = (first["T"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(gt, read_rgb(dataset.pairs[1].gt))
    opt = TestOptions().parse(["--dataroot", str(rrw), "--gpu_ids", "-1", "--layout", "rrw"], save=False)
    assert ResizeNatural3Dataset(opt).only_with_ground_truth() == ["ref_hf3_nogt_scene_frame_000030"]
