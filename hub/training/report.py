"""The training report as one self-contained HTML page with plots (matplotlib, Agg)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METRICS = ("precision", "recall", "ndcg", "map", "coverage")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _silhouette(segments: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3))
    for kind, curve in segments["silhouette"].items():
        ks = sorted(int(k) for k in curve)
        ax.plot(ks, [curve[str(k)] for k in ks], marker="o", label=kind)
    ax.axvline(segments["k"], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette")
    ax.set_title("Silhouette by k")
    ax.legend()
    return _png(fig)


def _elbow(segments: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3))
    inertia = segments.get("inertia") or {}
    ks = sorted(int(k) for k in inertia)
    ax.plot(ks, [inertia[str(k)] for k in ks], marker="o", color="#3b6ea5")
    ax.set_xlabel("k")
    ax.set_ylabel("inertia (within-cluster sum of squares)")
    ax.set_title("KMeans elbow")
    return _png(fig)


def _k_distances(dbscan: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3))
    curve = dbscan["k_distances"]
    ax.plot(range(len(curve)), curve, color="#3b6ea5")
    ax.axhline(dbscan["eps"], color="grey", linestyle="--", linewidth=1, label=f"eps = {dbscan['eps']:.3f}")
    ax.set_xlabel("profiles, by distance")
    ax.set_ylabel(f"distance to neighbour {dbscan['min_samples']}")
    ax.set_title("DBSCAN k-distance curve")
    ax.legend()
    return _png(fig)


def _dbscan_html(dbscan: dict[str, Any] | None) -> str:
    if not dbscan:
        return ""
    return f"""<h3>DBSCAN</h3><p>eps {dbscan["eps"]:.4f} (the knee of the k-distance curve, min_samples {dbscan["min_samples"]}),
{dbscan["clusters"]} clusters from {dbscan["core_samples"]} core samples of {dbscan["fitted_rows"]} profiles fitted; noise
(no segment) {100 * dbscan["noise_share"]:.1f} %; silhouette of the non-noise profiles {dbscan["silhouette_non_noise"]:.3f};
score (silhouette × share kept) {dbscan["score"]:.3f}.</p>
<img alt="DBSCAN k-distance curve" src="data:image/png;base64,{_k_distances(dbscan)}">"""


def _sizes(segments: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.barh(segments["labels"], segments["sizes"], color="#b5523b")
    ax.set_xlabel("visitors")
    ax.set_title("Segment sizes")
    return _png(fig)


def _metrics(models: dict[str, Any], k: int) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(models)
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        ax.bar([i + n * width for i in range(len(METRICS))], [models[name][m] for m in METRICS], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(METRICS))], [f"{m}@{k}" if m != "coverage" else m for m in METRICS])
    ax.set_title("Holdout metrics by model")
    ax.legend(fontsize=8)
    return _png(fig)


def _recommenders_html(ev: dict[str, Any], rows: str) -> str:
    chosen = f"ALS {html.escape(str(ev['chosen']['als']))}; blend {html.escape(str(ev['chosen']['blend']))}"
    if not ev["models"]:
        return f"<h2>Recommenders</h2><p>{html.escape(str(ev.get('skipped', 'not evaluated')))}. Parameters: {chosen}.</p>"
    return f"""<h2>Recommenders (holdout, k={ev["k"]}, {ev["test_users"]} users)</h2>
<table><tr><th>model</th>{"".join(f"<th>{m}</th>" for m in METRICS)}</tr>{rows}</table>
<p>Chosen on a validation split: {chosen}.</p>
<img alt="metrics by model" src="data:image/png;base64,{_metrics(ev["models"], ev["k"])}">"""


def _segments_html(seg: dict[str, Any], labels: str) -> str:
    if not seg["k"]:
        return "<h2>Segments</h2><p>None: the profiles were too alike to cluster; the bundle has no segment model.</p>"
    elbow = f'<img alt="KMeans elbow" src="data:image/png;base64,{_elbow(seg)}">' if seg.get("inertia") else ""
    return f"""<h2>Segments ({html.escape(seg["kind"])}, k={seg["k"]})</h2>
<ul>{labels}</ul>
<img alt="silhouette by k" src="data:image/png;base64,{_silhouette(seg)}">
{elbow}
<img alt="segment sizes" src="data:image/png;base64,{_sizes(seg)}">
{_dbscan_html(seg.get("dbscan"))}"""


def write_html(report: dict[str, Any], path: Path) -> None:
    ev = report["evaluation"]
    seg = report["segments"]
    rows = "".join(
        "<tr><th>" + html.escape(name) + "</th>" + "".join(f"<td>{m[metric]:.4f}</td>" for metric in METRICS) + "</tr>"
        for name, m in ev["models"].items()
    )
    labels = "".join(
        f"<li>{i}: {html.escape(label)} ({size})</li>"
        for i, (label, size) in enumerate(zip(seg["labels"], seg["sizes"], strict=True))
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>p13n training report v{report["version"]}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}}th{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>Training report — bundle v{report["version"]}</h1>
<p>Created {html.escape(report["created"])} in {report["seconds"]} s; {report["bundle_bytes"]} bytes; feature spec {html.escape(report["feature_spec_hash"][:12])}.</p>
{_recommenders_html(ev, rows)}
{_segments_html(seg, labels)}
</body></html>"""
    path.write_text(page, encoding="utf-8")


#: What each ``p13n evaluate`` protocol plots: (metric, label) per model.
PROTOCOL_METRICS = {
    "holdout": [(m, f"{m}@k" if m != "coverage" else m) for m in METRICS],
    "next-item": [("hit_rate", "hit rate@k"), ("mrr", "MRR@k")],
    "cold-start": [("recall", "recall@k")],
}


def _protocol_plot(report: dict[str, Any], metrics: list[tuple[str, str]]) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(report["models"])
    width = 0.8 / max(1, len(names))
    for n, name in enumerate(names):
        values = [float(report["models"][name].get(m, 0.0)) for m, _ in metrics]
        ax.bar([i + n * width for i in range(len(metrics))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], [label for _, label in metrics])
    ax.set_title(f"{report.get('protocol', 'holdout')} protocol, k={report['k']}")
    ax.legend(fontsize=8)
    return _png(fig)


def write_evaluation_html(report: dict[str, Any], path: Path) -> None:
    """``p13n evaluate --html``: the protocol's metrics per model as a table and a plot."""
    protocol = str(report.get("protocol", "holdout"))
    metrics = PROTOCOL_METRICS[protocol]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in metrics)
    rows = "".join(
        "<tr><th>" + html.escape(name) + "</th>"
        + "".join(f"<td>{float(values.get(m, 0.0)):.4f}</td>" for m, _ in metrics) + "</tr>"
        for name, values in report["models"].items()
    )  # fmt: skip
    facts = {k: v for k, v in report.items() if k in ("k", "seed", "cases", "users", "cold_items", "test_users", "split")}
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>p13n evaluation ({html.escape(protocol)})</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}}th{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>Evaluation: {html.escape(protocol)} protocol</h1>
<p>{html.escape(", ".join(f"{k} {v}" for k, v in facts.items()))}. {html.escape(str(report.get("metric_definitions", "")))}</p>
<table><tr><th>model</th>{head}</tr>{rows}</table>
<img alt="metrics by model" src="data:image/png;base64,{_protocol_plot(report, metrics)}">
</body></html>"""
    path.write_text(page, encoding="utf-8")
