"""Inline SVG charts of one result, drawn here (no JavaScript, no external files).

Every chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>`` saying
what it shows; the figures it draws are also printed beside it (workers/pages/render.py).
Baseline and current differ in colour (Okabe–Ito blue and vermillion, told apart by
colour-blind readers too), in fill (solid, translucent against hatched, outlined) and in
the line style of their markers (dashed against solid), so a chart reads in grey as well.

Each bar carries the class ``bar baseline`` or ``bar current`` (the browser tests count
them); their fill comes from :data:`CSS` and the one hatch :data:`PATTERN` of the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from stat_guard.display import QUANTILE_LEVELS, FeatureDisplay

BASELINE = "#0072b2"
CURRENT = "#d55e00"
INK = "#1f2328"
MUTED = "#57606a"
GRID = "#d0d7de"
WIDTH = 560
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: float | None) -> str:
    """A figure as every page and report prints it."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    return f"{value:.4g}"


def share(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:.1f} %"


# The page's one hatch pattern (put once at the top of each document by render.page) and
# the bars' look: a chart's markup names classes only.
PATTERN = ('<svg width="0" height="0" aria-hidden="true" style="position:absolute">'
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{CURRENT}" '
           f'fill-opacity="0.18"/><line x1="0" y1="0" x2="0" y2="6" stroke="{CURRENT}" '
           'stroke-width="2.5"/></pattern></defs></svg>')
CSS = (f"svg .baseline{{fill:{BASELINE};fill-opacity:.7}}"
       f"svg .current{{fill:url(#hatch);stroke:{CURRENT};stroke-width:1}}")


def _legend(x: float, y: float) -> str:
    return (f'<g class="legend" {_FONT} fill="{INK}">'
            f'<rect class="swatch baseline" x="{x}" y="{y}" width="12" height="10"/>'
            f'<text x="{x + 16}" y="{y + 9}">baseline</text>'
            f'<rect class="swatch current" x="{x + 72}" y="{y}" width="12" height="10"/>'
            f'<text x="{x + 88}" y="{y + 9}">current</text></g>')


def _svg(width: float, height: float, label: str, body: str, cls: str) -> str:
    return (f'<svg class="chart {cls}" role="img" aria-label="{esc(label)}" '
            f'viewBox="0 0 {width:g} {height:g}" width="{width:g}" height="{height:g}">'
            f'<title>{esc(label)}</title>{body}</svg>')


def _median(feature: FeatureDisplay, side: str) -> float | None:
    values = feature.quantiles.get(side)
    return values[QUANTILE_LEVELS.index(0.5)] if values else None


def histogram(feature: FeatureDisplay) -> str:
    """Baseline and current shares on the display bins, overlaid; the medians as lines."""
    edges, base, cur = feature.edges, feature.baseline, feature.current
    height, left, right, top, bottom = 200, 46, 12, 22, 34
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    low, high = edges[0], edges[-1]
    span = high - low
    peak = max(max(base), max(cur), 1e-12)

    def x_of(value: float) -> float:
        return left + (plot_w * (value - low) / span if span > 0 else 0.0)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value / peak)

    parts = [_legend(WIDTH - right - 140, 4),
             f'<g stroke="{GRID}"><line x1="{left}" y1="{top}" x2="{WIDTH - right}" '
             f'y2="{top}"/><line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" '
             f'y2="{top + plot_h}"/></g>']
    bars = []
    bottom_y = top + plot_h
    for i, (b, c) in enumerate(zip(base, cur, strict=True)):
        if span > 0:
            x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        else:
            x0, x1 = left, left + plot_w
        w = max(x1 - x0, 0.5)
        yb, yc = y_of(b), y_of(c)
        # Fill and hatch come from the page's style sheet (CSS below): small markup for
        # pages with hundreds of charts.
        bars.append(f'<rect class="bar baseline" x="{x0:.1f}" y="{yb:.1f}" width="{w:.1f}" '
                    f'height="{bottom_y - yb:.1f}"/><rect class="bar current" x="{x0:.1f}" '
                    f'y="{yc:.1f}" width="{w:.1f}" height="{bottom_y - yc:.1f}"/>')
    parts.append("".join(bars))
    medians = []
    for side, colour, dash in (("baseline", BASELINE, ' stroke-dasharray="5 3"'),
                               ("current", CURRENT, "")):
        median = _median(feature, side)
        if median is not None and span > 0 and low <= median <= high:
            x = x_of(median)
            medians.append(f"median {number(median)} ({side})")
            parts.append(f'<line class="median median-{side}" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" '
                         f'y2="{top + plot_h}" stroke="{colour}" stroke-width="2"{dash}/>')
    tick_values = [low, (low + high) / 2, high] if span > 0 else [low]
    ticks = []
    for value in tick_values:
        x = x_of(value) if span > 0 else left + plot_w / 2
        anchor = "start" if x <= left + 1 else "end" if x >= WIDTH - right - 1 else "middle"
        ticks.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="{anchor}">'
                     f'{esc(number(value))}</text>')
    ticks.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{share(peak)}</text>'
                 f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                 f'value (share of each window per bin)</text>')
    parts.append(f'<g {_FONT} fill="{MUTED}">{"".join(ticks)}</g>')
    label = (f"Histogram of {feature.name}: share of baseline and current values in "
             f"{len(base)} bins from {number(low)} to {number(high)}"
             + (f"; {', '.join(medians)}" if medians else ""))
    return _svg(WIDTH, height, label, "".join(parts), "histogram")


@dataclass(frozen=True)
class _Row:
    name: str
    baseline: float
    current: float
    unseen: bool = False
    other: bool = False


def category_bars(feature: FeatureDisplay) -> str:
    """A pair of bars per category (baseline above current); new categories marked."""
    rows = [_Row(c.name, c.baseline, c.current, c.unseen) for c in feature.categories]
    if feature.other_count or feature.other_baseline or feature.other_current:
        rows.append(_Row(f"other ({feature.other_count} categories)", feature.other_baseline,
                         feature.other_current, other=True))
    label_w, value_w, row_h, top = 170, 110, 26, 22
    bar_w = WIDTH - label_w - value_w
    height = top + row_h * max(len(rows), 1) + 6
    peak = max([max(r.baseline, r.current) for r in rows] + [1e-12])
    parts = [_legend(WIDTH - 150, 4)]
    new = 0
    for i, row in enumerate(rows):
        y = top + i * row_h
        name = row.name if len(row.name) <= 24 else row.name[:23] + "…"
        mark = ""
        if row.unseen:
            new += 1
            mark = (f'<text class="unseen-mark" x="{label_w - 6}" y="{y + 20}" '
                    f'text-anchor="end" font-weight="bold" fill="{CURRENT}">new</text>')
        wb, wc = bar_w * row.baseline / peak, bar_w * row.current / peak
        parts.append(
            f'<g class="category{" unseen" if row.unseen else ""}">'
            f'<title>{esc(row.name)}{" (not in the baseline)" if row.unseen else ""}: '
            f'baseline {share(row.baseline)}, current {share(row.current)}</title>'
            f'<text x="{label_w - 6}" y="{y + 10}" text-anchor="end" fill="{INK}"'
            f'{" font-style=" + chr(34) + "italic" + chr(34) if row.other else ""}>'
            f'{esc(name)}</text>{mark}'
            f'<rect class="bar baseline" x="{label_w}" y="{y + 1}" width="{wb:.1f}" '
            f'height="10"/><rect class="bar current" x="{label_w}" y="{y + 12}" '
            f'width="{wc:.1f}" height="10"/>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}" fill="{MUTED}">'
            f'{share(row.baseline)} → {share(row.current)}</text></g>')
    label = (f"Bar chart of {feature.name}: baseline and current share of each of "
             f"{len(rows)} categories" + (f"; {new} not in the baseline" if new else ""))
    return _svg(WIDTH, height, label, f'<g {_FONT}>{"".join(parts)}</g>', "categories")


@dataclass(frozen=True)
class Point:
    """One result of a model on the score-over-time chart."""

    at: float  # Unix seconds
    score: float | None
    verdict: str
    source: str
    run_id: str
    when: str  # as printed


def score_line(points: Sequence[Point], warning: float, drift: float) -> str:
    """The model's drift score over its recent results, one line per source, with the
    warning and drift thresholds (PSI) dashed."""
    scored = sorted((p for p in points if p.score is not None), key=lambda p: p.at)
    height, left, right, top, bottom = 170, 46, 12, 12, 30
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    if not scored:
        return _svg(WIDTH, 40, "No scored results yet", f'<text x="0" y="24" {_FONT} '
                    f'fill="{MUTED}">no scored results yet</text>', "history")
    start, end = min(p.at for p in scored), max(p.at for p in scored)
    peak = max(max(p.score or 0.0 for p in scored), drift) * 1.1

    def x_of(at: float) -> float:
        return left + (plot_w * (at - start) / (end - start) if end > start else plot_w / 2)

    def y_of(score: float) -> float:
        return top + plot_h * (1 - min(score, peak) / peak)

    parts = [f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" '
             f'y2="{top + plot_h}" stroke="{GRID}"/>']
    for value, name in ((warning, "warning"), (drift, "drift")):
        y = y_of(value)
        parts.append(f'<line class="threshold" x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" '
                     f'y2="{y:.1f}" stroke="{MUTED}" stroke-dasharray="2 3"/>'
                     f'<text x="{WIDTH - right}" y="{y - 3:.1f}" text-anchor="end" '
                     f'fill="{MUTED}">{name} {number(value)}</text>')
    styles = {"scheduled": (BASELINE, ""), "ondemand": (CURRENT, ' stroke-dasharray="6 3"')}
    for source in sorted({p.source for p in scored}):
        colour, dash = styles.get(source, (INK, ' stroke-dasharray="1 2"'))
        series = sorted((p for p in scored if p.source == source), key=lambda p: p.at)
        path = " ".join(f"{x_of(p.at):.1f},{y_of(p.score or 0.0):.1f}" for p in series)
        parts.append(f'<polyline class="series {esc(source)}" points="{path}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"{dash}/>')
        for p in series:
            x, y = x_of(p.at), y_of(p.score or 0.0)
            shape = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5"' if source == "scheduled"
                     else f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7"')
            fill = colour if p.verdict in ("drift", "warning") else "#ffffff"
            parts.append(f'<g class="point"><title>{esc(p.when)} {esc(source)}: score '
                         f'{number(p.score)} ({esc(p.verdict)})</title>{shape} fill="{fill}" '
                         f'stroke="{colour}" stroke-width="1.5"/></g>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" fill="{MUTED}">'
                 f'{number(peak)}</text><text x="{left - 4}" y="{top + plot_h}" '
                 f'text-anchor="end" fill="{MUTED}">0</text>'
                 f'<text x="{left}" y="{height - 6}" fill="{MUTED}">{esc(scored[0].when)}</text>'
                 f'<text x="{WIDTH - right}" y="{height - 6}" text-anchor="end" '
                 f'fill="{MUTED}">{esc(max(scored, key=lambda p: p.at).when)}</text>')
    newest = max(scored, key=lambda p: p.at)
    label = (f"Line chart of the drift score over the last {len(scored)} results, from "
             f"{scored[0].when} to {newest.when}; newest {number(newest.score)}; thresholds "
             f"warning {number(warning)} and drift {number(drift)}")
    return _svg(WIDTH, height, label, f'<g {_FONT}>{"".join(parts)}</g>', "history")
