"""Server-side SVG charts for the auditor pages: pure functions returning SVG text.

No script and no external asset: the pages are read on closed networks. Every label is escaped
(feature values come from declarations, which are untrusted input).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

POSITIVE = "#c0392b"  # raises the risk
NEGATIVE = "#2471a3"  # lowers it
NEUTRAL = "#7f8c8d"
SERIES_COLOURS = ("#c0392b", "#2471a3", "#d4ac0d", "#7f8c8d")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(x: float) -> str:
    return f"{x:.2f}"


def display(value: Any) -> str:
    """A feature value for a label: floats to 4 significant digits, the rest as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Step:
    """One row of a waterfall: a bar from ``start`` to ``end`` (``kind``: base, feature, other,
    total)."""

    label: str
    start: float
    end: float
    kind: str


def waterfall_steps(explanation: Mapping[str, Any], top: int = 10) -> list[Step]:
    """Base value, the ``top`` largest contributions, the rest as one "other N features" step,
    then the raw score: each step starts where the last ended, so the last bar ends at
    base value + every contribution (the raw score, in log-odds)."""
    base = float(explanation["base_value"])
    contributions = sorted(
        explanation["contributions"], key=lambda c: abs(float(c["contribution"])), reverse=True
    )
    shown, rest = contributions[:top], contributions[top:]
    steps = [Step("base value", base, base, "base")]
    running = base
    for c in shown:
        value = c.get("value")
        label = c["feature"] if value is None else f"{c['feature']} = {display(value)}"
        end = running + float(c["contribution"])
        steps.append(Step(label, running, end, "feature"))
        running = end
    if rest:
        end = running + math.fsum(float(c["contribution"]) for c in rest)
        steps.append(Step(f"other {len(rest)} features", running, end, "other"))
        running = end
    steps.append(Step("raw score (log-odds)", running, running, "total"))
    return steps


def waterfall_svg(steps: Sequence[Step], risk: float | None = None, width: int = 860) -> str:
    """The steps as a horizontal waterfall; the calibrated ``risk`` noted beside the total."""
    label_w, value_w, row_h, top_pad = 320, 130, 24, 28
    plot_w = width - label_w - value_w - 20
    height = top_pad + row_h * len(steps) + 30
    lo = min(min(s.start, s.end) for s in steps)
    hi = max(max(s.start, s.end) for s in steps)
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    parts = [
        f'<svg class="chart waterfall" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="SHAP waterfall: base value to raw score">',
        f'<text x="{label_w}" y="16" font-size="12" fill="#333">log-odds contribution '
        f"(red raises the risk, blue lowers it)</text>",
    ]
    for i, s in enumerate(steps):
        y = top_pad + i * row_h
        delta = s.end - s.start
        label = s.label if len(s.label) <= 44 else s.label[:43] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end">'
            f"<title>{_e(s.label)}</title>{_e(label)}</text>"
        )
        if s.kind in ("base", "total"):
            parts.append(
                f'<line x1="{x(s.end):.1f}" x2="{x(s.end):.1f}" y1="{y + 3}" y2="{y + row_h - 3}" '
                f'stroke="#111" stroke-width="3"/>'
            )
            note = _num(s.end)
            if s.kind == "total" and risk is not None:
                note += f"  (risk {risk:.1%})"
            parts.append(
                f'<text x="{width - value_w - 10}" y="{y + 16}" font-size="12" '
                f'font-weight="bold">{_e(note)}</text>'
            )
            continue
        colour = NEUTRAL if s.kind == "other" else POSITIVE if delta >= 0 else NEGATIVE
        left, right = sorted((x(s.start), x(s.end)))
        parts.append(
            f'<rect class="step" x="{left:.1f}" y="{y + 4}" width="{max(right - left, 1):.1f}" '
            f'height="{row_h - 8}" fill="{colour}"><title>{_e(s.label)}: {delta:+.3f}</title>'
            f"</rect>"
        )
        parts.append(
            f'<text x="{width - value_w - 10}" y="{y + 16}" font-size="12" fill="{colour}">'
            f"{delta:+.3f}</text>"
        )
    axis_y = top_pad + row_h * len(steps) + 4
    parts.append(
        f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>'
    )
    for tick in _ticks(lo, hi):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle" '
            f'fill="#555">{_num(tick)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(n + 2) if first + i * step <= hi]


def hbar_svg(items: Sequence[tuple[str, float]], title: str, width: int = 620) -> str:
    """Horizontal bars, one per (label, value >= 0), in the order given."""
    label_w, row_h, top_pad = 240, 20, 26
    plot_w = width - label_w - 70
    height = top_pad + row_h * len(items) + 8
    top = max((v for _, v in items), default=0.0) or 1.0
    parts = [
        f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<text x="4" y="16" font-size="12" font-weight="bold">{_e(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = top_pad + i * row_h
        w = max(value, 0.0) / top * plot_w
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">'
            f"{_e(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{NEGATIVE}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="11">{value:.3g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars_svg(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    flagged: Sequence[str] = (),
    width: int = 720,
) -> str:
    """Rates in [0, 1] per group, one bar per series side by side; ``flagged`` groups are
    marked. A missing value (None) draws no bar and reads "n/a"."""
    names = list(series)
    label_w, group_h, bar_h, top_pad = 160, 14 * len(names) + 10, 12, 44
    plot_w = width - label_w - 70
    height = top_pad + group_h * len(groups) + 8
    top = max((v for vs in series.values() for v in vs if v is not None), default=0.0) or 1.0
    parts = [
        f'<svg class="chart grouped" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<text x="4" y="16" font-size="12" font-weight="bold">{_e(title)}</text>',
    ]
    for k, name in enumerate(names):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        parts.append(
            f'<rect x="{label_w + k * 150}" y="24" width="10" height="10" fill="{colour}"/>'
            f'<text x="{label_w + k * 150 + 14}" y="33" font-size="11">{_e(name)}</text>'
        )
    flagged_set = set(flagged)
    for i, group in enumerate(groups):
        y = top_pad + i * group_h
        mark = " ⚑" if group in flagged_set else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + group_h / 2 + 4:.1f}" font-size="12" '
            f'text-anchor="end">{_e(group)}{mark}</text>'
        )
        for k, name in enumerate(names):
            value = series[name][i]
            by = y + 4 + k * 14
            text = "n/a" if value is None else f"{value:.1%}"
            w = 0.0 if value is None else max(value, 0.0) / top * plot_w
            colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
            parts.append(
                f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colour}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{by + 10}" font-size="10">{text}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def calibration_svg(bins: Sequence[Mapping[str, float]], size: int = 340) -> str:
    """Predicted probability (x) against the observed hit rate (y) per bin, with the diagonal;
    ``bins``: rows of ``models.metrics.calibration_table`` (mean_prob, hit_rate, parcels)."""
    pad = 40
    plot = size - 2 * pad
    top = max([0.1] + [max(float(b["mean_prob"]), float(b["hit_rate"])) for b in bins])
    top = min(1.0, math.ceil(top * 10) / 10)

    def px(v: float) -> float:
        return pad + v / top * plot

    def py(v: float) -> float:
        return size - pad - v / top * plot

    most = max((float(b["parcels"]) for b in bins), default=1.0) or 1.0
    parts = [
        f'<svg class="chart calibration" xmlns="http://www.w3.org/2000/svg" width="{size}" '
        f'height="{size}" viewBox="0 0 {size} {size}" role="img" aria-label="calibration">',
        f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>',
        f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(top)}" y2="{py(top)}" stroke="#999" '
        f'stroke-dasharray="4 3"/>',
        f'<text x="{size / 2}" y="{size - 8}" font-size="11" text-anchor="middle">'
        f"predicted risk (mean per bin)</text>",
        f'<text x="12" y="{size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {size / 2})">observed hit rate</text>',
        f'<text x="{pad}" y="{size - pad + 14}" font-size="10" text-anchor="middle">0</text>',
        f'<text x="{px(top)}" y="{size - pad + 14}" font-size="10" text-anchor="middle">'
        f"{top:.0%}</text>",
        f'<text x="{pad - 4}" y="{py(top) + 4}" font-size="10" text-anchor="end">{top:.0%}</text>',
    ]
    points = sorted(bins, key=lambda b: float(b["mean_prob"]))
    if points:
        path = " ".join(
            f"{px(float(b['mean_prob'])):.1f},{py(float(b['hit_rate'])):.1f}" for b in points
        )
        parts.append(f'<polyline points="{path}" fill="none" stroke="{POSITIVE}"/>')
    for b in points:
        r = 3 + 6 * math.sqrt(float(b["parcels"]) / most)
        parts.append(
            f'<circle cx="{px(float(b["mean_prob"])):.1f}" cy="{py(float(b["hit_rate"])):.1f}" '
            f'r="{r:.1f}" fill="{POSITIVE}" fill-opacity="0.6"><title>'
            f"{int(float(b['parcels']))} parcels: predicted {float(b['mean_prob']):.1%}, "
            f"observed {float(b['hit_rate']):.1%}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
