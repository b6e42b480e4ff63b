"""How scores are written (evaluation/reports.py): cells, the best marks, and the Markdown tables."""

from __future__ import annotations

import math

from evaluation.reports import (
    MEAN_ROW,
    Run,
    format_cells,
    markdown_table,
    metric_cell,
    score_cells,
    sets_markdown,
    spread_markdown,
    text_table,
)


def test_cells_have_two_decimals_for_psnr_four_for_ssim_and_say_na_without_a_value():
    a = {"I": (20.0, 0.5), "T_3": (22.004, 0.70006)}
    assert format_cells(a, ["I", "T_3"]) == ["20.00", "0.5000", "22.00", "0.7001"]
    assert format_cells(None, ["I"]) == ["n/a", "n/a"]
    assert metric_cell("SSIM_T_1", math.nan) == "n/a" and metric_cell("PSNR_pred", math.inf) == "inf"


def test_score_cells_mark_every_best_label_per_metric():
    scores = {"I": (30.0, 0.9), "T_1": (31.0, 0.8), "T_2": (29.0, 0.95), "T_3": (31.0, 0.7)}
    shown = score_cells(scores, ["I", "T_1", "T_2", "T_3"])
    assert shown.scored and shown.best == {2, 6, 5}  # PSNR tie T_1 = T_3, SSIM T_2
    assert shown.of(["I", "T_1", "T_2", "T_3"], "T_2") == ("29.00", "0.9500")
    assert score_cells({"pred": (25.0, 0.8)}, ["pred"]).best == set()  # a single label has no best
    empty = score_cells(None, ["I", "T_3"])
    assert not empty.scored and empty.cells == ("n/a",) * 4 and empty.of(["I", "T_3"], "I") is None


def test_one_markdown_table_for_one_run_and_for_several():
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    one = sets_markdown({"x": (2, {"pred": (20.0, 0.5)}), "average": (2, {"pred": (20.0, 0.5)})}, ["pred"])
    assert one.splitlines() == ["| set | images | PSNR_pred | SSIM_pred |", "|---|---|---|---|",
                                "| x | 2 | 20.00 | 0.5000 |", "| **average** | 2 | 20.00 | 0.5000 |"]
    runs = [Run(label, "f", {"x": (1, {"pred": (value, 0.5)})}, {"x": ["d"]})
            for label, value in (("a@1", 20.0), ("a@2", 22.0))]
    lines = spread_markdown(runs, ["pred"]).splitlines()
    assert lines[0] == "| set | images | run | PSNR_pred | SSIM_pred |"
    assert lines[2:5] == ["| x | 1 | a@1 | 20.00 | 0.5000 |", "| x | 1 | a@2 | 22.00 | 0.5000 |",
                          f"| x | 1 | **{MEAN_ROW}** | 21.00 ± 1.41 | 0.5000 ± 0.0000 |"]
    assert lines[5].startswith("| **average** | 1 | a@1 |")


def test_console_table_right_aligns_its_columns():
    assert text_table(["image", "PSNR_I"], [["a", "20.00"], ["mean", "n/a"]]).splitlines() == [
        "image  PSNR_I", "    a   20.00", " mean     n/a"]
