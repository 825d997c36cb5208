"""The next-item protocol: can a model tell what a visitor does next?

Each user's interactions are ordered by time; the **last** one is held out and every
earlier one is training data (for every model, so all see the same history). A model
ranks the catalog for the user, leaving out the items already in their history; the
case scores a **hit** when the held-out item is among the first ``k`` and a
**reciprocal rank** of 1/rank (0 past ``k``). Hit rate@k and MRR@k average over cases.

Cases that no model could get are counted and left out: a held-out item the user
already had (a repeat: excluded from every ranking), an item no one interacted with in
training (a cold item: see the cold-start protocol), and users with a single
interaction (no history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.data import Interactions


@dataclass
class NextItemSplit:
    train: Interactions
    #: user → the held-out item
    cases: dict[str, str]
    skipped: dict[str, int] = field(default_factory=dict)


def leave_last_out(data: Interactions) -> NextItemSplit:
    """Every user's latest interaction held out (ties broken by file order)."""
    n = len(data)
    stamps = np.where(np.isnan(data.timestamps), -np.inf, data.timestamps)
    order = np.lexsort((np.arange(n), stamps, data.users.astype(str)))
    users = data.users[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = users[:-1] != users[1:]
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    held = order[last & ~first]  # users with two or more interactions
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    train = data.subset(mask)
    skipped = {"single_interaction": int((last & first).sum()), "repeat": 0, "cold_item": 0}
    known_items = set(train.items.tolist())
    history: dict[str, set[str]] = {}
    for u, i in zip(train.users.tolist(), train.items.tolist(), strict=True):
        history.setdefault(str(u), set()).add(str(i))
    cases: dict[str, str] = {}
    for j in held:
        user, item = str(data.users[j]), str(data.items[j])
        if item in history.get(user, ()):
            skipped["repeat"] += 1
        elif item not in known_items:
            skipped["cold_item"] += 1
        else:
            cases[user] = item
    return NextItemSplit(train, cases, skipped)


def rank_metrics(rankings: Mapping[str, Sequence[str]], cases: Mapping[str, str], k: int) -> dict[str, float]:
    """Hit rate@k and MRR@k over ``cases`` (a user without a ranking scores 0)."""
    hits = 0.0
    reciprocal = 0.0
    for user, item in cases.items():
        ranked = list(rankings.get(user, ()))[:k]
        if item in ranked:
            hits += 1.0
            reciprocal += 1.0 / (ranked.index(item) + 1)
    n = max(1, len(cases))
    return {"hit_rate": hits / n, "mrr": reciprocal / n}
