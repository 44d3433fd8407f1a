"""Curves for the run page as SVG polylines (no JavaScript charting library, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass

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
