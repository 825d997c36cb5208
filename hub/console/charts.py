"""Charts drawn on the server as inline SVG: no script, no chart library, nothing for
the Content-Security-Policy to allow. Every chart carries a title and a description
for screen readers; the pages put the same numbers in a table beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 180
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 12, 28
COLOURS = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2")


def _nice(value: float) -> float:
    """A round upper bound for an axis (1, 2, 5 × 10ⁿ)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= value:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def _svg(title: str, description: str, body: str, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>{body}</svg>"
    )


def lines(title: str, times: Sequence[float], series: dict[str, Sequence[float]]) -> Markup:
    """A line per series over time (``times`` in epoch seconds)."""
    if len(times) < 2:
        return Markup('<p class="empty">Not enough samples yet to draw a chart.</p>')
    top = _nice(max((max(v) for v in series.values() if len(v)), default=0.0))
    t0, t1 = times[0], times[-1]
    span = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def xy(t: float, v: float) -> str:
        return f"{PAD_L + (t - t0) / span * plot_w:.1f},{PAD_T + plot_h - v / top * plot_h:.1f}"

    parts = [
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - PAD_R}" y2="{PAD_T + plot_h}"/>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end">{_fmt(top)}</text>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end">0</text>',
    ]
    for t, anchor in ((t0, "start"), (t1, "end")):
        label = datetime.fromtimestamp(t, UTC).strftime("%d %b %H:%M")
        x = PAD_L if anchor == "start" else WIDTH - PAD_R
        parts.append(f'<text class="tick" x="{x}" y="{HEIGHT - 8}" text-anchor="{anchor}">{label}</text>')
    legend = []
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(xy(t, float(v)) for t, v in zip(times, values, strict=False))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        legend.append(f'<text class="legend" x="{PAD_L + 8 + 130 * i}" y="{PAD_T + 10}" fill="{colour}">{escape(name)}</text>')
    description = f"{len(times)} samples; " + "; ".join(
        f"{name}: last {_fmt(float(v[-1]))}, peak {_fmt(float(max(v)))}" for name, v in series.items() if len(v)
    )
    return _svg(title, description, "".join(parts + legend))


def bars(title: str, values: dict[str, float]) -> Markup:
    """Horizontal bars, one per label."""
    if not values:
        return Markup('<p class="empty">Nothing to chart yet.</p>')
    top = _nice(max(values.values()))
    row_h = 24
    height = PAD_T + row_h * len(values) + 8
    plot_w = WIDTH - 160 - PAD_R - 60
    parts = []
    for i, (label, value) in enumerate(values.items()):
        y = PAD_T + i * row_h
        w = max(1.0, float(value) / top * plot_w) if value else 0.0
        parts.append(f'<text class="label" x="152" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="160" y="{y + 3}" width="{w:.1f}" height="16" fill="{COLOURS[i % len(COLOURS)]}"/>')
        parts.append(f'<text class="tick" x="{160 + w + 4:.1f}" y="{y + 15}">{_fmt(float(value))}</text>')
    description = "; ".join(f"{k}: {_fmt(float(v))}" for k, v in values.items())
    return _svg(title, description, "".join(parts), height)


def intervals(title: str, rows: Sequence[tuple[str, float | None, float | None, float | None]]) -> Markup:
    """Relative lift per row with its interval, around a zero line (as percentages)."""
    drawn = [(label, lift, lo, hi) for label, lift, lo, hi in rows if lift is not None]
    if not drawn:
        return Markup('<p class="empty">No lift to chart yet (a control and a metric with data are needed).</p>')
    reach = max(abs(v) for _, lift, lo, hi in drawn for v in (lift, lo, hi) if v is not None and math.isfinite(v))
    reach = _nice(reach * 100) / 100 or 0.01
    row_h = 26
    height = PAD_T + row_h * len(drawn) + 24
    left, right = 200, WIDTH - PAD_R - 10
    mid = (left + right) / 2

    def x(v: float) -> float:
        v = max(-reach, min(reach, v))
        return mid + v / reach * (right - left) / 2

    parts = [
        f'<line class="zero" x1="{mid}" y1="{PAD_T}" x2="{mid}" y2="{height - 22}"/>',
        f'<text class="tick" x="{left}" y="{height - 6}" text-anchor="middle">{-reach * 100:+g} %</text>',
        f'<text class="tick" x="{mid}" y="{height - 6}" text-anchor="middle">0</text>',
        f'<text class="tick" x="{right}" y="{height - 6}" text-anchor="middle">{reach * 100:+g} %</text>',
    ]
    for i, (label, lift, lo, hi) in enumerate(drawn):
        y = PAD_T + i * row_h + 12
        assert lift is not None
        colour = "#16a34a" if lo is not None and lo > 0 else "#dc2626" if hi is not None and hi < 0 else "#6b7280"
        parts.append(f'<text class="label" x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(label)}</text>')
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            parts.append(f'<line x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<circle cx="{x(lift):.1f}" cy="{y}" r="5" fill="{colour}"/>')
    description = "; ".join(
        f"{label}: lift {lift * 100:+.1f} %"
        + (f" ({lo * 100:+.1f} % to {hi * 100:+.1f} %)" if lo is not None and hi is not None else "")
        for label, lift, lo, hi in drawn
        if lift is not None
    )
    return _svg(title, description, "".join(parts), height)
