"""An experiment's results as one HTML page: a table per metric and the lift of each
variant with its interval as an inline SVG plot (no script, no external asset, every
value escaped)."""

from __future__ import annotations

from html import escape
from typing import Any

_W, _ROW, _LEFT = 560, 28, 170
#: Room kept right of the plot for each row's lift
_LABEL = 80


def _pct(x: float) -> str:
    return f"{x * 100:+.2f} %"


def _plot(metric: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Lift and interval per variant, on a shared axis through zero."""
    points = [(v, m) for v, m in rows if "lift" in m and "error" not in m]
    if not points:
        return "<p>No comparison yet (too few users, or no variance).</p>"
    lo = min(min(m["ci"][0], 0.0) for _, m in points)
    hi = max(max(m["ci"][1], 0.0) for _, m in points)
    span = (hi - lo) or 1.0

    def x(value: float) -> float:
        return float(_LEFT + (value - lo) / span * (_W - _LEFT - _LABEL))

    height = _ROW * len(points) + 30
    parts = [
        f'<svg role="img" aria-label="lift of {escape(metric)} with its interval" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{height - 20}" stroke="#888" stroke-dasharray="3 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 6}" font-size="11" text-anchor="middle">0</text>',
    ]
    for i, (variant, m) in enumerate(points):
        y = 18 + i * _ROW
        colour = "#1a7f37" if m["ci"][0] > 0 else "#cf222e" if m["ci"][1] < 0 else "#57606a"
        parts += [
            f'<text x="4" y="{y + 4}" font-size="12">{escape(variant)}</text>',
            f'<line x1="{x(m["ci"][0]):.1f}" y1="{y}" x2="{x(m["ci"][1]):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>',
            f'<circle cx="{x(m["lift"]):.1f}" cy="{y}" r="5" fill="{colour}"/>',
            f'<text x="{_W - 4}" y="{y + 4}" font-size="11" text-anchor="end">{escape(_pct(m["lift"]))}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: dict[str, Any]) -> str:
    name = escape(str(result["experiment"]))
    design = result["design"]
    srm = result["srm"]
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Experiment {name}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2rem;max-width:60rem}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.warn{background:#fff8c5;padding:.6rem;border:1px solid #d4a72c}</style>",
        f"</head><body><h1>Experiment {name}</h1>",
        f"<p>Control: <b>{escape(str(design['control']))}</b> (design: {escape(str(design['source']))}); "
        f"method: {escape(str(result['method']))}, α = {result['alpha']}; exposures "
        f"{escape(str(result['first_exposure']))} – {escape(str(result['last_exposure']))}.</p>",
        f"<p>Sample ratio check: p = {srm['p_value']:.3g}{' — <b>mismatch</b>' if srm['flagged'] else ''}.</p>",
    ]
    for note in result["notes"]:
        out.append(f'<p class="warn">{escape(note)}</p>')
    variants = result["variants"]
    for metric in result["metrics"]:
        m = metric["name"]
        kind = "guardrail" if metric["guardrail"] else "goal"
        out.append(f"<h2>{escape(m)} <small>({escape(metric['kind'])} of {escape(metric['event'])}, {kind})</small></h2>")
        out.append(
            "<table><tr><th>variant</th><th>users</th><th>mean</th><th>lift</th><th>interval</th>"
            "<th>p-value</th><th>Holm p</th><th>chance to win</th></tr>"
        )
        rows = []
        for v, entry in variants.items():
            e = entry["metrics"].get(m, {})
            rows.append((v, e))
            if "lift" in e and "error" not in e:
                holm = f"{e['p_value_holm']:.4f}" if "p_value_holm" in e else "—"
                harm = " <b>worse</b>" if e.get("harm") else ""
                cells = (
                    f"<td>{escape(_pct(e['lift']))}{harm}</td><td>{escape(_pct(e['ci'][0]))} … {escape(_pct(e['ci'][1]))}</td>"
                    f"<td>{e['p_value']:.4f}</td><td>{holm}</td><td>{e['chance_to_win'] * 100:.1f} %</td>"
                )
            else:
                reason = "control" if entry.get("control") else e.get("error", "no comparison")
                cells = f"<td colspan=5>{escape(reason)}</td>"
            out.append(f"<tr><td>{escape(v)}</td><td>{e.get('users', 0)}</td><td>{e.get('mean', 0.0):.4g}</td>{cells}</tr>")
        out.append("</table>")
        out.append(_plot(m, rows))
    out.append(f"<p><small>{escape(str(result['multiple_testing']))}.</small></p></body></html>")
    return "".join(out)
