"""Charts as SVG geometry for the templates (no JavaScript charting library, no CDN): curves for the run page,
ratings with their intervals for the model leaderboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

WIDTH, HEIGHT = 600, 160


@dataclass(frozen=True)
class Curve:
    key: str
    label: str
    points: str  # "x,y x,y …" in a WIDTH × HEIGHT box, y down
    last: float | None
    low: float
    high: float
    count: int


MAX_POINTS = 400


def curve(
    history: list[dict],
    key: str,
    label: str,
    *,
    low: float | None = None,
    high: float | None = None,
    smoothing: float = 0.0,
) -> Curve:
    """The values of `key` over the steps of `history`, scaled into the box (fixed bounds where given, e.g.
    0–1 for accuracy). `smoothing` is an exponential moving average's weight on the past (per-step losses are
    noisy; 0 draws them raw); long histories are thinned to MAX_POINTS."""
    values = [(row["step"], float(row[key])) for row in history if row.get(key) is not None]
    if not values:
        return Curve(key, label, "", None, low or 0.0, high or 1.0, 0)
    if smoothing:
        average, smoothed = values[0][1], []
        for step, value in values:
            average = smoothing * average + (1 - smoothing) * value
            smoothed.append((step, average))
        values = smoothed
    if len(values) > MAX_POINTS:
        stride = -(-len(values) // MAX_POINTS)
        values = values[::stride] + ([values[-1]] if (len(values) - 1) % stride else [])
    ys = [v for _, v in values]
    low = min(ys) if low is None else low
    high = max(ys) if high is None else high
    # Never blow noise in the last decimals up to the full height: the box spans at least 5% of the values' size.
    least = 0.05 * max(abs(low), abs(high), 1e-6)
    if high - low < least:
        middle = (high + low) / 2
        low, high = middle - least / 2, middle + least / 2
    first, last_step = values[0][0], values[-1][0]
    span = max(last_step - first, 1)
    points = " ".join(
        f"{(step - first) / span * WIDTH:.1f},{HEIGHT - (v - low) / (high - low) * HEIGHT:.1f}" for step, v in values
    )
    return Curve(key, label, points, ys[-1], low, high, len(values))


# --- the leaderboard's ratings with their intervals --------------------------------------------------------

PLOT_WIDTH = 600  # the viewBox's width; the SVG scales to its box
LABEL_WIDTH = 120  # left of the axis: the versions' names
ROW_HEIGHT = 28
AXIS_HEIGHT = 24  # below the rows: the ticks' values
PLOT_PAD = 12  # right of the axis, so the last tick's value fits


class Rated(Protocol):
    """What a plotted row needs (e.g. `training.leaderboard.Row`)."""

    @property
    def label(self) -> str: ...

    @property
    def rating(self) -> float: ...

    @property
    def low(self) -> float: ...

    @property
    def high(self) -> float: ...


@dataclass(frozen=True)
class IntervalBar:
    """One version: a point at `x` (its rating) and a bar from `x_low` to `x_high` (its interval) on the line at
    height `y`."""

    label: str
    rating: float
    low: float
    high: float
    x: float
    x_low: float
    x_high: float
    y: float


@dataclass(frozen=True)
class Tick:
    x: float
    value: float

    @property
    def text(self) -> str:
        return f"{self.value:g}"


@dataclass(frozen=True)
class IntervalPlot:
    """Geometry of a forest plot in a `width` × `height` viewBox, y down: the axis runs from `x0` (value `low`) to
    `x1` (value `high`); rows are centred on their bars' `y`; ticks stand at round values."""

    bars: tuple[IntervalBar, ...]
    ticks: tuple[Tick, ...]
    low: float
    high: float
    width: int
    height: int
    x0: float
    x1: float
    axis_y: float

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    @property
    def label_x(self) -> float:
        """Where the versions' names end (right-aligned, left of the axis)."""
        return self.x0 - 10

    @property
    def tick_y(self) -> float:
        """The baseline of the ticks' values, under the rows."""
        return self.axis_y + 16


def nice_step(span: float, count: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`."""
    raw = max(span, 1e-9) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def interval_plot(rows: Sequence[Rated]) -> IntervalPlot:
    """Each row's rating as a point and its interval (`low`–`high`) as a horizontal bar, one line per row in the
    given order, on one shared axis that spans every interval and starts and ends at round ticks."""
    values = [v for row in rows for v in (row.low, row.rating, row.high) if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 10:  # a single point or tiny intervals: still draw a readable axis
        middle = (high + low) / 2
        low, high = middle - 5, middle + 5
    step = nice_step(high - low)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    x0, x1 = float(LABEL_WIDTH), float(PLOT_WIDTH - PLOT_PAD)
    axis_y = float(len(rows) * ROW_HEIGHT)

    def x(value: float) -> float:
        return round(x0 + (value - low) / (high - low) * (x1 - x0), 1)

    bars = tuple(
        IntervalBar(
            label=row.label,
            rating=row.rating,
            low=row.low,
            high=row.high,
            x=x(row.rating),
            x_low=x(row.low),
            x_high=x(row.high),
            y=(n + 0.5) * ROW_HEIGHT,
        )
        for n, row in enumerate(rows)
    )
    count = round((high - low) / step)
    ticks = tuple(Tick(x(low + k * step), round(low + k * step, 6)) for k in range(count + 1))
    return IntervalPlot(bars, ticks, low, high, PLOT_WIDTH, int(axis_y + AXIS_HEIGHT), x0, x1, axis_y)
