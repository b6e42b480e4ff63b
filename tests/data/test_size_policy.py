"""The size policies' names and lines (data/size_policy.py), for test sets and for saved predictions."""

from __future__ import annotations

import pytest

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
