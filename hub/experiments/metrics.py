"""Experiment metrics: what an operator measures a variation by (JSON, documented in
docs/EXPERIMENTS.md).

A metric counts the events of one type a visitor sends from their first exposure to the
end of its window, per visitor:

* ``conversion``: 1 when at least one such event, else 0 (a proportion);
* ``count``: how many;
* ``revenue``: the sum of their amounts (minor units, as the warehouse keeps money).

``slot`` keeps only events whose ``context.slot`` names that slot (click-through on a
slot's items: clicks the SDK tagged with the slot they came from). ``guardrail``
metrics are watched for harm and never pick a winner. ``cuped_days`` > 0 adjusts the
metric with the same metric over that many days before each visitor's first exposure
(CUPED). The file ``P13N_HUB_EXPERIMENT_METRICS`` names replaces the defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KINDS = ("conversion", "count", "revenue")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class MetricError(ValueError):
    """A metric definition is invalid; the message says which and why."""


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    event: str
    window_hours: float = 72.0
    slot: str = ""
    guardrail: bool = False
    cuped_days: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: What every experiment is measured by unless the operator defines metrics.
DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric("purchase", "conversion", "purchase", 168.0),
    Metric("add_to_cart", "conversion", "add_to_cart", 72.0),
    Metric("revenue", "revenue", "purchase", 168.0),
    Metric("clicks", "count", "click", 72.0),
    Metric("page_views", "count", "page_view", 72.0, guardrail=True),
)


def parse_metrics(doc: Any) -> tuple[Metric, ...]:
    """Metrics from a JSON document (``{"metrics": [...]}`` or a list)."""
    items = doc.get("metrics") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise MetricError('metrics: give a non-empty list (or {"metrics": [...]})')
    out: list[Metric] = []
    for i, raw in enumerate(items):
        where = f"metrics[{i}]"
        if not isinstance(raw, dict):
            raise MetricError(f"{where}: must be an object")
        unknown = set(raw) - {"name", "kind", "event", "window_hours", "slot", "guardrail", "cuped_days"}
        if unknown:
            raise MetricError(f"{where}: unknown field(s) {sorted(unknown)}")
        name, kind, event = raw.get("name"), raw.get("kind"), raw.get("event")
        if not isinstance(name, str) or not _NAME.match(name):
            raise MetricError(f"{where}.name: lower-case letters, digits and _ (at most 48)")
        if kind not in KINDS:
            raise MetricError(f"{where}.kind: one of {KINDS}")
        if not isinstance(event, str) or not _EVENT.match(event):
            raise MetricError(f"{where}.event: an event type such as purchase")
        window = raw.get("window_hours", 72.0)
        cuped = raw.get("cuped_days", 0.0)
        for key, value, top in (("window_hours", window, 24.0 * 365), ("cuped_days", cuped, 365.0)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= top:
                raise MetricError(f"{where}.{key}: a number from 0 to {top:g}")
        if window <= 0:
            raise MetricError(f"{where}.window_hours: must be positive")
        slot = raw.get("slot", "")
        if not isinstance(slot, str) or len(slot) > 64:
            raise MetricError(f"{where}.slot: a slot name")
        guardrail = raw.get("guardrail", False)
        if not isinstance(guardrail, bool):
            raise MetricError(f"{where}.guardrail: true or false")
        out.append(Metric(name, kind, event, float(window), slot, guardrail, float(cuped)))
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise MetricError("metrics: names must be unique")
    return tuple(out)


def load_metrics(path: str) -> tuple[Metric, ...]:
    """The metrics in ``path`` (JSON), or the defaults when ``path`` is empty."""
    if not path:
        return DEFAULT_METRICS
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise MetricError(f"{path}: {e}") from e
    return parse_metrics(doc)


def pick(metrics: Sequence[Metric], names: Sequence[str]) -> tuple[Metric, ...]:
    """The metrics named (all when ``names`` is empty); unknown names are an error."""
    if not names:
        return tuple(metrics)
    by_name = {m.name: m for m in metrics}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise MetricError(f"unknown metric(s) {unknown}; defined: {sorted(by_name)}")
    return tuple(by_name[n] for n in names)
