"""The SVG line charts of the training page (pages/svg.py): points, scales, ticks."""

from __future__ import annotations

import pytest

from pages import svg


def test_svg_chart_points_scales_and_ticks():
    chart = svg.line_chart([svg.Series("a", [1, 2, 3, 4], [1.0, 0.1, float("nan"), 0.01]),
                            svg.Series("b", [1, 2], [0.5, 0.4], dashed=True)], "t", "samples")
    lines = [c for c in chart.children if type(c).__name__ == "polyline"]
    assert [int(line["data-points"]) for line in lines] == [3, 2]  # the NaN is left out
    assert [len(line["points"].split()) for line in lines] == [3, 2]
    assert "(log y)" in chart.render()  # values spanning 100x get a log axis
    assert svg.nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0] and svg.nice_ticks(3.0, 11.0) == [4.0, 6.0, 8.0, 10.0]
    assert svg.log_ticks(0.01, 10) == [0.01, 0.1, 1.0, 10.0]
    assert svg.log_ticks(0.05, 2) == pytest.approx([0.1, 0.3, 1.0])
    assert svg.short_number(1500) == "1.5k" and svg.short_number(2e6) == "2M"
    assert "no data yet" in svg.line_chart([svg.Series("a", [], [])], "t", "x").render()
