"""How evaluate.py reads --sets and --pred (options/evaluate_options.py)."""

from __future__ import annotations

import pytest

from options.evaluate_options import parse_pred, parse_sets
from util.errors import UserError


def test_sets_keep_their_order_and_refuse_reserved_repeated_or_missing_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert list(parse_sets([f"y={tmp_path / 'b'}", f"x={tmp_path / 'a'}"])) == ["y", "x"]
    for entries, message in (([f"average={tmp_path / 'a'}"], "reserved"),
                             ([f"x={tmp_path / 'a'}", f"x={tmp_path / 'b'}"], "given twice"),
                             ([f"-x={tmp_path / 'a'}"], "expected NAME=DIR"),
                             ([f"x={tmp_path / 'none'}"], "not found")):
        with pytest.raises(UserError, match=message):
            parse_sets(entries)


def test_pred_takes_a_bare_folder_for_one_set_and_one_entry_per_set_otherwise(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    assert parse_pred([str(tmp_path / "p")], ["x"]) == {"x": str(tmp_path / "p")}
    assert parse_pred([f"y={tmp_path / 'q'}", f"x={tmp_path / 'p'}"], ["x", "y"]) == {
        "y": str(tmp_path / "q"), "x": str(tmp_path / "p")}
    with pytest.raises(UserError, match="no prediction folder for set"):
        parse_pred([f"x={tmp_path / 'p'}"], ["x", "y"])
    with pytest.raises(UserError, match="--pred x: folder"):
        parse_pred([str(tmp_path / "none")], ["x"])
