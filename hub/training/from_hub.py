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
    """Weighted, decayed, one row per (subject, item), sorted by subject then item; its
    time is the latest of its events. Vectorised: 1M events in about a second."""
    if not rows.subjects:
        return Interactions(*(np.array([], dtype=t) for t in (object, object, np.float32, np.float64)))
    kinds, kind_of = _factorize(rows.types)
    base = np.array([float(rules.event_weights.get(str(k)) or 0.0) for k in kinds])[kind_of]
    used = base > 0
    subjects, subject_of = _factorize(np.asarray(rows.subjects, dtype=object)[used].tolist())
    items, item_of = _factorize(np.asarray(rows.items, dtype=object)[used].tolist())
    times = np.asarray(rows.times, dtype=np.float64)[used]
    age = np.maximum(0.0, now - times)
    weight = base[used] * 0.5 ** (age / (rules.half_life_days * 86400.0))
    pair = subject_of.astype(np.int64) * len(items) + item_of
    keys, key_of = np.unique(pair, return_inverse=True)  # sorted: subject, then item
    total = np.bincount(key_of, weights=weight, minlength=len(keys))
    latest = np.full(len(keys), -np.inf)
    np.maximum.at(latest, key_of, times)
    return Interactions(
        subjects[keys // len(items)], items[keys % len(items)], total.astype(np.float32), latest.astype(np.float64)
    )


def _factorize(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values sorted, each value's position among them): a dict pass and a
    sort of the distinct values (np.unique on 1M Python strings takes ten times longer)."""
    first: dict[str, int] = {}
    codes = np.fromiter((first.setdefault(v, len(first)) for v in values), dtype=np.int64, count=len(values))
    distinct = np.array(list(first), dtype=object)
    order = np.argsort(distinct.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[codes]


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
