"""Training data from the hub's own warehouse (``p13n train --from-hub``).

Interactions are the item events of a window (``window_days`` back from ``now``) that
the store lets training use (consent to personalization, not erased:
``HubStore.training_rows``). Each event weighs its type's weight (view 1 … purchase
8 by default) times an exponential decay, ``0.5 ** (age / half_life)``, so last week's
clicks count more than last quarter's; one row per subject and item carries the sum
and the latest time. Items are the catalog plus every item seen in events; profiles
for clustering are the subjects' marts features.

Too little data is not an error to train through: :class:`NotEnoughData` says which
minimum was missed, and the caller keeps the live bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from hub.storage import HubStore, TrainingRows
from models.data import Interactions, Item
from models.weights import EVENT_WEIGHTS


class NotEnoughData(ValueError):
    """The window holds too little to train on; ``reason`` names the minimum missed."""

    def __init__(self, reason: str, counts: Mapping[str, int]) -> None:
        self.reason = reason
        self.counts = dict(counts)
        super().__init__(f"not enough data: {reason} ({', '.join(f'{k} {v}' for k, v in self.counts.items())})")


@dataclass(frozen=True)
class HubDataRules:
    window_days: float = 90.0
    half_life_days: float = 30.0
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))
    min_interactions: int = 200
    min_subjects: int = 20
    min_items: int = 5


@dataclass
class HubData:
    interactions: Interactions
    items: dict[str, Item]
    profiles: list[dict[str, Any]]
    #: window, counts and what was left out, for the run's record
    summary: dict[str, Any]


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def interactions_from_rows(rows: TrainingRows, rules: HubDataRules, now: float) -> Interactions:
    """Weighted, decayed, one row per (subject, item)."""
    weights = rules.event_weights
    half_life_s = rules.half_life_days * 86400.0
    total: dict[tuple[str, str], float] = {}
    latest: dict[tuple[str, str], float] = {}
    for subject, item, kind, ts in zip(rows.subjects, rows.items, rows.types, rows.times, strict=True):
        base = weights.get(kind)
        if not base:
            continue
        age = max(0.0, now - ts)
        key = (subject, item)
        total[key] = total.get(key, 0.0) + base * 0.5 ** (age / half_life_s)
        latest[key] = max(latest.get(key, ts), ts)
    keys = sorted(total)
    return Interactions(
        np.array([k[0] for k in keys], dtype=object),
        np.array([k[1] for k in keys], dtype=object),
        np.array([total[k] for k in keys], dtype=np.float32),
        np.array([latest[k] for k in keys], dtype=np.float64),
    )


def _require(rules: HubDataRules, counts: Mapping[str, int], where: str) -> None:
    for name, minimum in (
        ("interactions", rules.min_interactions),
        ("subjects", rules.min_subjects),
        ("items", rules.min_items),
    ):
        if counts[name] < minimum:
            raise NotEnoughData(f"{counts[name]} {name} {where}, fewer than {minimum}", counts)


def since(rules: HubDataRules, now: datetime) -> str:
    """The window's start (ISO)."""
    return _iso(now - timedelta(days=rules.window_days))


def prepare(rows: TrainingRows, rules: HubDataRules, now: datetime, start: str = "") -> HubData:
    """Interactions, items and profiles from ``rows``; raises :class:`NotEnoughData`
    below a minimum."""
    data = interactions_from_rows(rows, rules, now.timestamp())
    items = {c["item_id"]: Item(c["item_id"], c["title"], c["description"], c["tags"], c["category"]) for c in rows.catalog}
    for item_id in set(data.items.tolist()) - set(items):
        items[item_id] = Item(item_id, "")
    counts = {
        "events": len(rows.subjects),
        "interactions": len(data),
        "subjects": len(set(data.users.tolist())),
        "items": len(set(data.items.tolist())),
    }
    summary = {
        "since": start or since(rules, now),
        "until": _iso(now),
        **counts,
        "catalog_items": len(rows.catalog),
        "left_out": rows.left_out,
    }
    _require(rules, counts, "in the window")
    profiles = [rows.profiles.get(s, {}) for s in sorted(set(data.users.tolist()))]
    return HubData(data, items, [p for p in profiles if p], summary)


def load(store: HubStore, rules: HubDataRules, now: datetime) -> HubData:
    """Read the window from the store; raises :class:`NotEnoughData` below a minimum."""
    start = since(rules, now)
    return prepare(store.training_rows(start), rules, now, start)


def prepare_interactions(data: Interactions, whole: HubData, rules: HubDataRules) -> HubData:
    """A part of the window (the challenger's, before the holdout) with the whole
    window's items and profiles; raises :class:`NotEnoughData` below a minimum."""
    counts = {
        "interactions": len(data),
        "subjects": len(set(data.users.tolist())),
        "items": len(set(data.items.tolist())),
    }
    _require(rules, counts, "before the holdout")
    return HubData(data, whole.items, whole.profiles, {**whole.summary, **counts})
