"""Inline SVG plots for report.html, written by hand (no plotting library, no network).

* :func:`scatter_panels`: small multiples, one panel per framework, log-log scatter of
  error/bound against magnitude, one colour per dtype, with the bound (y = 1) drawn;
* :func:`verdict_matrix`: a framework x dimension heatmap with counts.

Every function returns one ``<svg>`` element as a string; all text is escaped.
"""
from __future__ import annotations

import math
from html import escape

DTYPE_COLORS = {"float16": "#d95f02", "bfloat16": "#7570b3", "float32": "#1b9e77", "float64": "#386cb0", "?": "#777"}
STATE_COLORS = {"match": "#c7e9c0", "known": "#fdd49e", "new": "#fb6a4a", "empty": "#f0f0f0"}
_FLOOR = 1e-6   # err/bound below this (0 included) is drawn at the floor


def _log(x: float, floor: float) -> float:
    return math.log10(max(x, floor)) if math.isfinite(x) else math.log10(1e300)


def _quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile of an ascending list (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _ticks(lo: int, hi: int, max_ticks: int = 7) -> list[int]:
    step = max(1, math.ceil((hi - lo) / max_ticks))
    return list(range(lo, hi + 1, step))


def scatter_panels(title: str, panels: list[tuple[str, list[tuple[float, float, str]]]], *,
                   x_label: str, y_label: str, width: int = 300, height: int = 220,
                   cols: int = 3) -> str:
    """One log-log panel per (name, [(x, y, dtype), ...]); y = 1 (the bound) as a red line.
    Points are clamped into the axes; x <= 0 sits at the left edge."""
    pad_l, pad_b, pad_t, pad_r = 46, 34, 22, 10
    n = max(1, len(panels))
    rows = math.ceil(n / cols)
    total_w, total_h = cols * width, rows * height + 40
    all_pts = [p for _, pts in panels for p in pts]
    xs = sorted(_log(x, 1e-300) for x, _, _ in all_pts if x > 0) or [0.0]
    ys = [_log(y, _FLOOR) for _, y, _ in all_pts] or [0.0]
    # the axis fits the data: from the 2nd percentile of the magnitudes (a few subnormal or
    # 1e-300 cases would otherwise squeeze every other point against the right edge);
    # points below it are drawn at the left edge, and the axis label says so
    x_lo, x_hi = math.floor(_quantile(xs, 0.02)), math.ceil(xs[-1])
    # likewise the y axis stops at the 98th percentile (errors of 1e300 bounds -- an
    # infinity against a finite value -- are drawn at the top edge)
    y_lo, y_hi = min(math.floor(min(ys)), -1), max(math.ceil(_quantile(sorted(ys), 0.98)), 1)
    if x_hi == x_lo:
        x_hi += 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{total_w}" height="{total_h}" '
           f'viewBox="0 0 {total_w} {total_h}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<text x="{total_w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>']
    for i, (name, pts) in enumerate(panels):
        ox, oy = (i % cols) * width, 24 + (i // cols) * height
        pw, ph = width - pad_l - pad_r, height - pad_t - pad_b

        def X(v):
            return ox + pad_l + (v - x_lo) / (x_hi - x_lo) * pw

        def Y(v):
            return oy + pad_t + (1 - (v - y_lo) / (y_hi - y_lo)) * ph

        out.append(f'<g class="panel"><text x="{ox + pad_l + pw / 2}" y="{oy + 14}" text-anchor="middle" '
                   f'font-size="11">{escape(name)} ({len(pts)})</text>')
        out.append(f'<rect x="{ox + pad_l}" y="{oy + pad_t}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
        for t in _ticks(x_lo, x_hi):
            out.append(f'<line x1="{X(t):.1f}" y1="{oy + pad_t + ph}" x2="{X(t):.1f}" y2="{oy + pad_t + ph + 3}" stroke="#666"/>'
                       f'<text x="{X(t):.1f}" y="{oy + pad_t + ph + 13}" font-size="8" text-anchor="middle">1e{t}</text>')
        for t in _ticks(y_lo, y_hi, 6):
            out.append(f'<line x1="{ox + pad_l - 3}" y1="{Y(t):.1f}" x2="{ox + pad_l}" y2="{Y(t):.1f}" stroke="#666"/>'
                       f'<text x="{ox + pad_l - 5}" y="{Y(t) + 3:.1f}" font-size="8" text-anchor="end">1e{t}</text>')
        out.append(f'<line x1="{ox + pad_l}" y1="{Y(0):.1f}" x2="{ox + pad_l + pw}" y2="{Y(0):.1f}" stroke="#d62728" '
                   f'stroke-dasharray="4 2"><title>bound (error = bound)</title></line>')
        for x, y, dt in pts:
            cx = X(max(_log(x, 1e-300), x_lo)) if x > 0 else ox + pad_l + 2
            cy = Y(min(max(_log(y, _FLOOR), y_lo), y_hi))
            cx = min(max(cx, ox + pad_l + 1), ox + pad_l + pw - 1)
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{DTYPE_COLORS.get(dt, "#777")}" '
                       f'fill-opacity="0.7"/>')
        edge = sum(1 for x, _, _ in pts if x <= 0 or _log(x, 1e-300) < x_lo)
        top = sum(1 for _, y, _ in pts if _log(y, _FLOOR) > y_hi)
        note = "; ".join(([f"{edge} ≤1e{x_lo}: left"] if edge else [])
                         + ([f"{top} >1e{y_hi}: top"] if top else []))
        label = f"{x_label} ({note})" if note else x_label
        out.append(f'<text x="{ox + pad_l + pw / 2}" y="{oy + height - 6}" font-size="8" text-anchor="middle">{escape(label)}</text>'
                   f'<text x="{ox + 10}" y="{oy + pad_t + ph / 2}" font-size="9" text-anchor="middle" '
                   f'transform="rotate(-90 {ox + 10} {oy + pad_t + ph / 2})">{escape(y_label)}</text></g>')
    lx = 10
    for dt, col in DTYPE_COLORS.items():
        if dt == "?":
            continue
        out.append(f'<circle cx="{lx}" cy="{total_h - 10}" r="4" fill="{col}"/><text x="{lx + 7}" y="{total_h - 6}" font-size="10">{dt}</text>')
        lx += 80
    out.append(f'<line x1="{lx}" y1="{total_h - 10}" x2="{lx + 20}" y2="{total_h - 10}" stroke="#d62728" stroke-dasharray="4 2"/>'
               f'<text x="{lx + 24}" y="{total_h - 6}" font-size="10">error = bound; points at the bottom: error below 1e-6 x bound</text>')
    out.append("</svg>")
    return "\n".join(out)


def verdict_matrix(rows: list[str], cols: list[str], cells: list[list[tuple[str, str]]], *,
                   title: str = "Verdict matrix (against the canonical definition)") -> str:
    """Heatmap: ``cells[i][j] = (state, text)``; state one of :data:`STATE_COLORS`."""
    cw, ch, lw, top = 130, 30, 300, 50
    w, h = lw + cw * len(cols) + 10, top + ch * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>']
    for j, c in enumerate(cols):
        out.append(f'<text x="{lw + j * cw + cw / 2}" y="{top - 8}" text-anchor="middle" font-size="11">{escape(c)}</text>')
    for i, r in enumerate(rows):
        y = top + i * ch
        out.append(f'<text x="{lw - 6}" y="{y + ch / 2 + 4}" text-anchor="end" font-size="11">{escape(r)}</text>')
        for j, (state, text) in enumerate(cells[i]):
            x = lw + j * cw
            out.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{STATE_COLORS.get(state, "#eee")}">'
                       f'<title>{escape(r)} / {escape(cols[j])}: {escape(text)}</title></rect>'
                       f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" font-size="10">{escape(text)}</text>')
    lx, ly = lw, top + ch * len(rows) + 20
    for state, label in (("match", "all match"), ("known", "known discrepancies"), ("new", "NEW discrepancies"),
                         ("empty", "no cases")):
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{STATE_COLORS[state]}"/>'
                   f'<text x="{lx + 16}" y="{ly}" font-size="10">{label}</text>')
        lx += 140
    out.append("</svg>")
    return "\n".join(out)
