"""The cold-start protocol: can a model place items nobody has interacted with yet?

A share of the items that have interactions (``share``, chosen at random with ``seed``)
is held out of **all** training interactions, as if they had just been added to the
catalog. A model ranks only those cold items for every user who later interacted with
one of them and has training history of their own; **recall@k** is the share of the
user's cold items in the top ``k``, averaged over users. Collaborative models know
nothing of a cold item, so only what describes it — its text — can rank it; a seeded
random ranking is the floor (its expected recall@k is k / cold items).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.data import Interactions


@dataclass
class ColdSplit:
    train: Interactions
    cold: list[str]
    #: user → the cold items they interacted with (users with training history only)
    truth: dict[str, set[str]]


def hold_out_items(data: Interactions, share: float = 0.2, seed: int = 42) -> ColdSplit:
    items = sorted(set(data.items.tolist()))
    rng = np.random.default_rng(seed)
    n = max(1, int(round(share * len(items))))
    cold = sorted(rng.choice(np.array(items, dtype=object), size=n, replace=False).tolist())
    cold_set = set(cold)
    is_cold = np.array([i in cold_set for i in data.items.tolist()], dtype=bool)
    train = data.subset(~is_cold)
    warm_users = set(train.users.tolist())
    truth: dict[str, set[str]] = {}
    for user, item in zip(data.users[is_cold].tolist(), data.items[is_cold].tolist(), strict=True):
        if user in warm_users:
            truth.setdefault(str(user), set()).add(str(item))
    return ColdSplit(train, cold, truth)


def recall_at_k(rankings: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]], k: int) -> float:
    """Mean over users of |top k ∩ their cold items| / |their cold items|."""
    if not truth:
        return 0.0
    total = 0.0
    for user, relevant in truth.items():
        top = set(list(rankings.get(user, ()))[:k])
        total += len(top & relevant) / len(relevant)
    return total / len(truth)
