"""The size policies (data/size_policy.py): their names and lines, for test sets and saved predictions; --align
against PIL's default resize, as the ERRNet-family loaders align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SIZED_SET, aligned, make_sized_set, photo_pair, write_png

from data import open_test_set
from data.size_policy import check_size_flags, describe_prediction_size, describe_size_policy, size_policy_name
from util.errors import UserError


@pytest.mark.parametrize("align, keep_size, max_size, name, words", [
    (0, False, 0, "released", "resized down to a multiple of 4"),
    (0, True, 0, "original", "original size (reflect-padded"),
    (32, False, 0, "align32", "multiples of 32 (bicubic"),
    (0, True, 1024, "max_size1024+original", "longer side capped at 1024 (Lanczos), then original size"),
])
def test_names_and_lines(align, keep_size, max_size, name, words):
    assert size_policy_name(align, keep_size, max_size) == name
    line = describe_size_policy(align, keep_size, max_size)
    assert line.startswith("size: ") and words in line


def test_predictions_are_scored_at_the_original_or_the_aligned_size():
    assert describe_prediction_size(0) == "size: predictions scored at the ground truth's original size"
    assert describe_prediction_size(32) == describe_size_policy(32, False) + "; predictions scored at that size"


@pytest.mark.parametrize("align, keep_size, prefix, message", [
    (6, False, "--", "--align 6: expected a positive multiple of 4"),
    (32, True, "--val_", "--val_align 32 with --val_keep_size"),
])
def test_bad_size_flags_are_named_with_their_prefix(align, keep_size, prefix, message):
    with pytest.raises(UserError, match=message):
        check_size_flags(align, keep_size, prefix)


def test_align_dataset_gives_pil_default_resize_of_input_and_ground_truth(tmp_path: Path, make_options) -> None:
    root = make_sized_set(tmp_path / "set")
    opt = make_options("test", "--dataroot", root, "--align", "32")
    dataset = open_test_set(opt)
    assert "multiples of 32" in dataset.size_policy() and dataset.size_policy_name() == "align32"
    for k in range(len(SIZED_SET)):
        sample = dataset[k]
        for key, folder in (("I", "testB"), ("T", "testA1")):
            expected = aligned(root / folder / f"a{k}.png")
            got = (sample[key] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            assert got.shape == expected.shape and np.array_equal(got, expected), (k, key)


@pytest.mark.parametrize("args, needles", [
    (["--align", "30"], ("--align 30", "multiple of 4")),
    (["--align", "32", "--keep_size"], ("--align 32", "--keep_size", "choose one")),
])
def test_align_flag_errors_name_the_flags(tmp_path: Path, make_options, args, needles) -> None:
    root = make_sized_set(tmp_path / "set")
    with pytest.raises(UserError) as err:
        open_test_set(make_options("test", "--dataroot", root, *args))
    assert all(needle in str(err.value) for needle in needles)


def test_align_image_too_small_is_a_user_error_naming_it(tmp_path: Path, make_options) -> None:
    i, t = photo_pair(0, (30, 42))
    write_png(i, tmp_path / "set" / "testB" / "small.png")
    write_png(t, tmp_path / "set" / "testA1" / "small.png")
    with pytest.raises(UserError, match=r"small\.png: image of 42x30 pixels has a side shorter than 32.*--align 32"):
        open_test_set(make_options("test", "--dataroot", tmp_path / "set", "--align", "32"))[0]
