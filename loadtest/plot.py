"""Latency-against-load plots as SVG (no plotting library): one panel per family, p50 and p95 against
the offered load, the family's p95 target dashed."""
from __future__ import annotations

import math
from html import escape

W, H, PAD = 300, 210, 44


def panel(title: str, xlabel: str, points: list[tuple[float, float, float]], target: float, dx: int) -> str:
    """points: (load, p50, p95) in seconds; NaN p95 (no answers) is drawn at the top."""
    xs = [p[0] for p in points]
    top = max([target * 1.5] + [v for p in points for v in p[1:] if not math.isnan(v)])
    x = lambda v: dx + PAD + (v - 0) / (max(xs) * 1.05) * (W - PAD - 12)  # noqa: E731
    y = lambda v: H - PAD + 10 - (min(v, top) / top) * (H - PAD - 20)  # noqa: E731
    out = [f'<text x="{dx + W / 2}" y="14" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{dx + PAD}" y1="{y(0)}" x2="{dx + W - 8}" y2="{y(0)}" stroke="black"/>',
           f'<line x1="{dx + PAD}" y1="{y(0)}" x2="{dx + PAD}" y2="{y(top)}" stroke="black"/>',
           f'<line x1="{dx + PAD}" y1="{y(target)}" x2="{dx + W - 8}" y2="{y(target)}" stroke="red" '
           f'stroke-dasharray="4 3"/><text x="{dx + W - 8}" y="{y(target) - 3}" text-anchor="end" fill="red" '
           f'font-size="10">p95 target {target:g} s</text>',
           f'<text x="{dx + W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>',
           f'<text x="{dx + 10}" y="{H / 2}" font-size="11" transform="rotate(-90 {dx + 10} {H / 2})" '
           f'text-anchor="middle">latency (s)</text>']
    for frac in (0, 0.5, 1):
        out.append(f'<text x="{dx + PAD - 4}" y="{y(top * frac) + 4}" text-anchor="end" font-size="10">'
                   f'{top * frac:.1f}</text>')
    for v in xs:
        out.append(f'<text x="{x(v)}" y="{y(0) + 14}" text-anchor="middle" font-size="10">{v:g}</text>')
    for idx, color in ((1, "#1f77b4"), (2, "#d62728")):
        pts = " ".join(f"{x(p[0]):.1f},{y(top if math.isnan(p[idx]) else p[idx]):.1f}" for p in points)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{x(p[0]):.1f}" cy="{y(top if math.isnan(p[idx]) else p[idx]):.1f}" r="3" '
                f'fill="{color}"/>' for p in points]
    return "\n".join(out)


def figure(panels: list[tuple[str, str, list[tuple[float, float, float]], float]]) -> str:
    body = "\n".join(panel(t, xl, pts, target, i * W) for i, (t, xl, pts, target) in enumerate(panels))
    legend = (f'<text x="8" y="{H + 14}" font-size="11"><tspan fill="#1f77b4">● p50</tspan>  '
              f'<tspan fill="#d62728">● p95</tspan></text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H + 20}" '
            f'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>\n'
            f'{body}\n{legend}\n</svg>\n')
