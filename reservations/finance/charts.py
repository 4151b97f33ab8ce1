"""SVG charts drawn on the server: the geometry here, the markup in templates/finance/_chart.html. No script.

Sizes are in the SVG's own units. The page draws a chart the content's width on a phone (about 330 px) and
at most 28rem wide beside its table on a wider screen (site.css, .figure), so a chart is about WIDTH pixels
wide everywhere and FONT-unit text stays 11-15 px: readable at 360 px without a second layout. Series differ
by pattern and shape, never by colour alone (solid, hatched and dotted bars; a dashed line with round
markers; a dashed goal line; a framed band), each named in the legend, and every colour is at least 3:1
against white (WCAG 1.4.11). The numbers are in the table beside each chart.
"""
import math
import unicodedata
from dataclasses import dataclass, field

WIDTH = 360
FONT = 13
PLOT_HEIGHT = 160
LEGEND_ROW = 18
# (fill, stroke) of each bar style; a pattern's id is the chart's id and the style (see _chart.html).
BAR_STYLES = {"solid": ("#0b5cad", "#0b5cad"), "hatch": ("url(#{id}-hatch)", "#a33a00"),
              "dots": ("url(#{id}-dots)", "#3d3d6b")}
LINE_STROKE = "#1b1b1b"
GOAL_STROKE = "#1e6b2f"
BAND_STROKE = "#8a5a00"


@dataclass(frozen=True)
class Series:
    style: str  # solid | hatch | dots (bars), line (a dashed line with markers), goal, band
    label: str


@dataclass
class BarSeries:
    series: Series
    values: list[float | None]
    titles: list[str]  # what each bar says when pointed at (its <title>)


@dataclass
class LineSeries:
    series: Series
    values: list[float | None]
    titles: list[str]


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    stroke: str
    title: str


@dataclass
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Polyline:
    points: str
    markers: list[tuple[float, float, str]]


@dataclass
class Rule:
    """A horizontal reference: a goal line (y1 == y2) or a band between two values."""

    x1: float
    x2: float
    y1: float
    y2: float
    style: str  # goal | band


@dataclass
class Chart:
    id: str
    title: str
    description: str
    width: float
    height: float
    plot: tuple[float, float, float, float]  # left, top, right, bottom
    zero: float  # the y of the value 0
    legend: list[tuple[Series, float]] = field(default_factory=list)  # and the y of its row
    y_ticks: list[Label] = field(default_factory=list)
    x_ticks: list[Label] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    lines: list[Polyline] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)  # value labels on the bars, "no data" marks
    horizontal: bool = False  # bars go across (the value axis is x)

    def swatch(self, style: str) -> tuple[str, str]:
        """The fill and stroke of a bar style, its patterns named after this chart (ids are unique per page)."""
        fill, stroke = BAR_STYLES[style]
        return fill.format(id=self.id), stroke


def text_width(text: str, size: float = FONT) -> float:
    """About how wide `text` is drawn: a full-width (CJK) character is one em, anything else 0.6 em."""
    return sum(size if unicodedata.east_asian_width(c) in "WF" else 0.6 * size for c in text)


def fit(text: str, width: float, size: float = FONT) -> str:
    """`text`, cut with an ellipsis to fit `width` (an SVG <text> never wraps; the table has it whole)."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k) from at or below `low` to at or above `high`."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [i * step for i in range(first, last + 1)]


def _legend(chart: Chart, entries: list[Series]) -> float:
    """Lay the legend out at the top, one entry per row; returns the y below it."""
    y = 4.0
    for series in entries:
        chart.legend.append((series, y))
        y += LEGEND_ROW
    return y + 6


def column_chart(chart_id: str, title: str, description: str, categories: list[str], bars: list[BarSeries], *,
                 stacked: bool = False, lines: tuple[LineSeries, ...] = (), goal: tuple[float, str] | None = None,
                 band: tuple[float, float, str] | None = None, tick_text=str, label_every: int = 1,
                 value_labels: list[str] | None = None, empty_text: str = "", y_floor: float | None = None) -> Chart:
    """Bars up (and down, below zero) for each category, side by side or stacked, optional lines over them,
    a goal line and a band; `value_labels` go above each category's bars; a category with no value at all
    gets `empty_text` on the axis."""
    values = [v for s in bars for v in s.values if v is not None] + [v for s in lines for v in s.values
                                                                      if v is not None]
    if stacked:
        values += [sum(s.values[i] or 0 for s in bars) for i in range(len(categories))]
    values += [goal[0]] if goal else []
    values += list(band[:2]) if band else []
    ticks = nice_ticks(min([0.0, *values] + ([y_floor] if y_floor is not None else [])), max([0.0, *values]))
    low, high = ticks[0], ticks[-1]
    left = 8 + 1.15 * max(text_width(tick_text(t)) for t in ticks)  # the estimate, and some room to spare
    entries = [s.series for s in bars] + [s.series for s in lines]
    entries += [Series("goal", goal[1])] if goal else []
    entries += [Series("band", band[2])] if band else []
    chart = Chart(chart_id, title, description, WIDTH, 0, (0, 0, 0, 0), 0)
    top = _legend(chart, entries)
    bottom = top + PLOT_HEIGHT
    right = WIDTH - 4
    chart.plot, chart.height = (left, top, right, bottom), bottom + FONT + 10

    def y_of(v: float) -> float:
        return bottom - (v - low) / (high - low) * PLOT_HEIGHT

    chart.zero = y_of(0)
    chart.y_ticks = [Label(left - 4, y_of(t), tick_text(t), "end") for t in ticks]
    slot = (right - left) / max(len(categories), 1)

    def x_mid(i: int) -> float:
        return left + slot * (i + 0.5)

    chart.x_ticks = [Label(x_mid(i), bottom + FONT + 4, name) for i, name in enumerate(categories)
                     if i % label_every == 0]
    _bars(chart, bars, len(categories), slot, left, stacked, y_of)
    for series in lines:
        points = [(x_mid(i), y_of(v), series.titles[i]) for i, v in enumerate(series.values) if v is not None]
        chart.lines.append(Polyline(" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points), points))
    if goal:  # named in the legend, not on the line, where it would cover the bars' labels
        chart.rules.append(Rule(left, right, y_of(goal[0]), y_of(goal[0]), "goal"))
    if band:
        chart.rules.append(Rule(left, right, y_of(band[1]), y_of(band[0]), "band"))
    for i in range(len(categories)):
        if any(s.values[i] is not None for s in bars):
            if value_labels:
                chart.labels.append(Label(x_mid(i), max(top + FONT, y_of(_top(bars, i, stacked)) - 3),
                                          value_labels[i]))
        elif empty_text:
            chart.labels.append(Label(x_mid(i), chart.zero - 3, empty_text))
    return chart


def _top(bars: list[BarSeries], i: int, stacked: bool) -> float:
    heights = [s.values[i] or 0 for s in bars]
    return sum(heights) if stacked else max(max(heights), 0)


def _bars(chart: Chart, bars: list[BarSeries], n: int, slot: float, left: float, stacked: bool, y_of) -> None:
    group = slot * 0.8
    width = group if stacked else group / max(len(bars), 1)
    for i in range(n):
        base = 0.0
        for k, series in enumerate(bars):
            value = series.values[i]
            if value is None or (stacked and value == 0):  # nothing of it in the stack
                continue
            x = left + slot * i + slot * 0.1 + (0 if stacked else k * width)
            low, high = (base, base + value) if stacked else sorted((0.0, value))
            if stacked:
                base += value
            fill, stroke = chart.swatch(series.series.style)
            top, foot = y_of(high), y_of(low)
            if foot - top < 1:  # about 0: still a sliver, so that a value is told apart from no value
                top, foot = (foot - 1, foot) if value >= 0 else (top, top + 1)
            chart.rects.append(Rect(x, top, max(width, 1), foot - top, fill, stroke, series.titles[i]))


def row_chart(chart_id: str, title: str, description: str, rows: list[tuple[str, float | None, str, str]], *,
              maximum: float = 100, tick_text=str, style: str = "solid") -> Chart:
    """One bar across per row, each under its name: rows are (name, value or None, the value's words, the
    bar's title). The value axis runs from 0 to `maximum` at the foot."""
    left, right, row = 4.0, WIDTH - 52.0, 2 * FONT + 14
    chart = Chart(chart_id, title, description, WIDTH, 0, (left, 4, right, 0), 0, horizontal=True)
    fill, stroke = chart.swatch(style)
    y = 4.0
    for name, value, words, bar_title in rows:
        chart.labels.append(Label(left, y + FONT, fit(name, WIDTH - 8), "start"))
        bar_y = y + FONT + 4
        if value is not None and value > 0:
            chart.rects.append(Rect(left, bar_y, max((right - left) * min(value, maximum) / maximum, 1), FONT,
                                    fill, stroke, bar_title))
        end = left + (right - left) * min(value or 0, maximum) / maximum
        chart.labels.append(Label(end + 4, bar_y + FONT - 2, words, "start"))
        y += row
    bottom = y
    chart.plot = (left, 4, right, bottom)
    chart.x_ticks = [Label(left + (right - left) * t / maximum, bottom + FONT + 4, tick_text(t),
                           "start" if t == 0 else "end" if t == maximum else "middle")
                     for t in nice_ticks(0, maximum)]
    chart.height = bottom + FONT + 10
    return chart
