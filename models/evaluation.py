"""Offline evaluation: splits and ranking metrics at k.

Definitions (binary relevance; ``rec`` = the top-k list, ``rel`` = the user's held-out
items):

* precision@k = |rec ∩ rel| / k
* recall@k = |rec ∩ rel| / |rel|
* NDCG@k = DCG / IDCG with DCG = Σ_{r=1..k} [rec_r ∈ rel] / log2(r + 1) and IDCG the DCG
  of a perfect list of min(|rel|, k) hits
* AP@k = Σ_{r=1..k} precision@r · [rec_r ∈ rel] / min(|rel|, k); MAP@k is its mean
* catalog coverage = distinct items recommended to anyone / catalog size

Every metric is averaged over test users with at least one held-out item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.data import Interactions

SPLITS = ("random", "stratified-item", "time")


def precision_at_k(rec: Sequence[str], rel: set[str], k: int) -> float:
    return sum(1 for r in rec[:k] if r in rel) / k


def recall_at_k(rec: Sequence[str], rel: set[str], k: int) -> float:
    return sum(1 for r in rec[:k] if r in rel) / len(rel) if rel else 0.0


def ndcg_at_k(rec: Sequence[str], rel: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(rec[:k]) if item in rel)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), k)))
    return dcg / idcg if idcg else 0.0


def ap_at_k(rec: Sequence[str], rel: set[str], k: int) -> float:
    hits = 0
    total = 0.0
    for r, item in enumerate(rec[:k], start=1):
        if item in rel:
            hits += 1
            total += hits / r
    return total / min(len(rel), k) if rel else 0.0


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    users: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "ndcg": self.ndcg,
            "map": self.map,
            "coverage": self.coverage,
            "users": self.users,
        }


def score(recommendations: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]], k: int, catalog_size: int) -> Scores:
    users = [u for u, rel in truth.items() if rel]
    if not users:
        return Scores(0.0, 0.0, 0.0, 0.0, 0.0, 0)
    p = r = n = m = 0.0
    seen: set[str] = set()
    for u in users:
        rec = list(recommendations.get(u, ()))[:k]
        seen.update(rec)
        p += precision_at_k(rec, truth[u], k)
        r += recall_at_k(rec, truth[u], k)
        n += ndcg_at_k(rec, truth[u], k)
        m += ap_at_k(rec, truth[u], k)
    c = len(users)
    return Scores(p / c, r / c, n / c, m / c, len(seen) / catalog_size if catalog_size else 0.0, c)


def split(data: Interactions, how: str, ratio: float, seed: int) -> tuple[Interactions, Interactions]:
    """Train/test split. ``random``: per interaction; ``stratified-item``: per item, so
    each item keeps ``ratio`` of its interactions in train; ``time``: the latest
    ``1 - ratio`` of each user's interactions (by timestamp) go to test."""
    if how not in SPLITS:
        raise ValueError(f"unknown split {how!r}; expected one of {SPLITS}")
    if not 0.0 < ratio < 1.0:
        raise ValueError("ratio must be between 0 and 1")
    rng = np.random.default_rng(seed)
    n = len(data)
    if how == "random":
        train = rng.random(n) < ratio
    elif how == "stratified-item":
        train = np.zeros(n, dtype=bool)
        order = np.argsort(data.items, kind="stable")
        items_sorted = data.items[order]
        boundaries = np.flatnonzero(items_sorted[1:] != items_sorted[:-1]) + 1
        for group in np.split(order, boundaries):
            shuffled = rng.permutation(group)
            cut = max(1, int(round(len(group) * ratio))) if len(group) > 1 else 1
            train[shuffled[:cut]] = True
    else:
        if np.isnan(data.timestamps).all():
            raise ValueError("time split needs a timestamp column")
        train = np.ones(n, dtype=bool)
        order = np.lexsort((np.nan_to_num(data.timestamps, nan=-np.inf), data.users))
        users_sorted = data.users[order]
        boundaries = np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1
        for group in np.split(order, boundaries):
            n_test = int(math.floor(len(group) * (1 - ratio)))
            if n_test and len(group) > 1:
                train[group[len(group) - n_test :]] = False
    return data.subset(train), data.subset(~train)
