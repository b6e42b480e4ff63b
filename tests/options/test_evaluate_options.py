"""How evaluate.py reads its options (options/evaluate_options.py): --sets, --pred, the runs to score, the device."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from options.evaluate_options import EvaluateOptions, evaluation_folder, parse_pred, parse_sets
from util.errors import UserError

CPU = ["--gpu_ids", "-1"]


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


@pytest.mark.parametrize("args, needle", [
    (["--epoch", "60", "60"], "--epoch 60 60: 60 given twice"),
    (["--name", "a", "b", "--suffix", "x"], "--suffix x with several --name"),
    (["--epoch", "60", "70", "--load_iter", "5"], "--load_iter 5 replaces --epoch"),
    (["--epoch", "60", "70", "--pred", "DIR"], "--pred scores saved predictions"),
])
def test_run_list_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    with pytest.raises(UserError, match=re.escape(needle)):
        EvaluateOptions().parse(["--sets", f"x={tmp_path}", *args, *CPU], save=False)


def test_pred_runs_without_a_device_and_names_its_folder_after_the_predictions(tmp_path: Path, cpu_only) -> None:
    sets = ["--sets", f"nature={tmp_path}"]
    opt = EvaluateOptions().parse([*sets, "--pred", "OUTPUTS/nature", "--gpu_ids", "0"], save=False)
    assert opt.gpu_ids == [] and evaluation_folder(opt) == "./results/eval_pred_nature"
    opt = EvaluateOptions().parse([*sets, "--pred", "OUTPUTS/nature", "--name", "ERRNet"], save=False)
    assert evaluation_folder(opt) == "./results/ERRNet/eval_pred"
    with pytest.raises(UserError, match="--gpu_ids 0: CUDA is not available"):
        EvaluateOptions().parse(sets, save=False)  # a checkpoint runs a network: the device is checked
