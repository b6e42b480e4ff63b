"""Line charts as inline SVG (dominate tags): no plotting library, no script, readable from a file:// page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dominate import svg

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 320, 200
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 24, 34


@dataclass
class Series:
    """One line of a chart: its legend label, x and y values, and whether it is drawn dashed."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    dashed: bool = False


def use_log_scale(values: Sequence[float], ratio: float = 20.0) -> bool:
    """Return True when every value is positive and they span at least `ratio` (then a log axis helps)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= ratio


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Return round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    span = high - low
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Return the powers of ten in [low, high], with 3x added when there are fewer than three."""
    ticks = [10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    if len([t for t in ticks if low <= t <= high]) < 3:
        ticks = [t * m for t in ticks for m in (1, 3)]
    return [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]


def short_number(value: float) -> str:
    """Return value compactly for a tick label: 1500 -> '1.5k', 2e6 -> '2M', 0.05 -> '0.05'."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    """Return a non-empty range around [low, high] (a single value gets a margin)."""
    if high > low:
        return low, high
    if log:
        return low / 2, high * 2
    margin = abs(low) * 0.05 or 1.0
    return low - margin, high + margin


def line_chart(series: Sequence[Series], title: str, x_label: str, log_y: bool | None = None) -> svg.svg:
    """Return an SVG line chart of the series (log y axis when log_y, or by use_log_scale when None).

    Each series is one <polyline class="series"> with a point per (x, y) pair whose values are finite
    (and positive on a log axis); its data-points attribute says how many points it has.
    """
    points_of = []
    for s in series:
        pairs = [(x, y) for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
        points_of.append(pairs)
    all_y = [y for pairs in points_of for _, y in pairs]
    if log_y is None:
        log_y = use_log_scale(all_y)
    if log_y:
        points_of = [[(x, y) for x, y in pairs if y > 0] for pairs in points_of]
        all_y = [y for pairs in points_of for _, y in pairs]
    all_x = [x for pairs in points_of for x, _ in pairs]
    chart = svg.svg(viewBox=f"0 0 {WIDTH} {HEIGHT}", cls="chart", role="img")
    chart.add(svg.title(title))
    chart.add(svg.text(title, x=LEFT, y=15, font_size=12, font_weight="bold"))
    if not all_x:
        chart.add(svg.text("no data yet", x=WIDTH / 2, y=HEIGHT / 2, text_anchor="middle", font_size=11))
        return chart
    x0, x1 = _padded(min(all_x), max(all_x), False)
    y0, y1 = _padded(min(all_y), max(all_y), log_y)
    top = TOP + (12 if len(series) > 1 else 0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        if log_y:
            fraction = (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0))
        else:
            fraction = (y - y0) / (y1 - y0)
        return top + (1 - fraction) * plot_h

    axes = svg.g(cls="axes", font_size=10, fill="#444")
    axes.add(svg.rect(x=LEFT, y=top, width=plot_w, height=plot_h, fill="none", stroke="#bbb"))
    for tick in (log_ticks(y0, y1) if log_y else nice_ticks(y0, y1)):
        axes.add(svg.line(x1=LEFT, x2=LEFT + plot_w, y1=f"{py(tick):.1f}", y2=f"{py(tick):.1f}", stroke="#eee"))
        axes.add(svg.text(short_number(tick), x=LEFT - 4, y=f"{py(tick) + 3:.1f}", text_anchor="end"))
    for tick in nice_ticks(x0, x1):
        axes.add(svg.text(short_number(tick), x=f"{px(tick):.1f}", y=top + plot_h + 13, text_anchor="middle"))
    axes.add(svg.text(x_label + (" (log y)" if log_y else ""), x=LEFT + plot_w / 2, y=HEIGHT - 4,
                      text_anchor="middle"))
    chart.add(axes)
    for k, (s, pairs) in enumerate(zip(series, points_of)):
        color = COLORS[k % len(COLORS)]
        line = svg.polyline(cls="series", fill="none", stroke=color, stroke_width=1.5, data_label=s.label,
                            data_points=len(pairs),
                            points=" ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pairs))
        if s.dashed:
            line["stroke-dasharray"] = "4 3"
        line.add(svg.title(s.label))
        chart.add(line)
        if len(pairs) <= 40:
            for x, y in pairs:
                chart.add(svg.circle(cx=f"{px(x):.1f}", cy=f"{py(y):.1f}", r=2, fill=color))
        if len(series) > 1:  # the legend: a line under the title, entries left to right
            left = LEFT + sum(24 + 6.5 * len(other.label) for other in series[:k])
            chart.add(svg.text(("- - " if s.dashed else "— ") + s.label, x=f"{left:.1f}", y=top - 4, font_size=10,
                               fill=color))
    return chart
