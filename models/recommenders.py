"""Recommenders over one training set: popularity, ALS, item-based (EASE or item-kNN),
content-based, hybrid.

All share :class:`Catalog` (dense item ids) and score every item for a user; ranking
excludes the user's training items. Hyperparameters are chosen by :mod:`models.tuning`
on a validation split, never fixed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.als import ALSFactors, ALSParams, fold_in, top_k, train_als
from models.data import Index, Interactions, Item, user_item_matrix
from models.item_based import ItemNeighbours, ItemParams, train_items
from models.text_model import TextModel, fit_text, user_vector


@dataclass
class Catalog:
    """Item ids (interactions ∪ catalog file) and per-user training history."""

    items: Index
    users: Index
    history: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # user → (item idx, weights)
    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    @classmethod
    def build(cls, train: Interactions, extra_items: Sequence[str] = ()) -> Catalog:
        items = Index.of(sorted(set(train.items.tolist()) | set(extra_items)))
        users = Index.of(sorted(set(train.users.tolist())))
        m = user_item_matrix(train, users, items)
        history = {}
        for u, row in enumerate(users.ids):
            start, end = m.indptr[u], m.indptr[u + 1]
            history[row] = (m.indices[start:end].copy(), m.data[start:end].copy())
        pop = np.asarray(m.sum(axis=0)).ravel().astype(np.float32)
        return cls(items, users, history, pop)

    def seen(self, user: str) -> np.ndarray:
        h = self.history.get(user)
        return h[0] if h is not None else np.zeros(0, dtype=np.int32)


def _zscore(s: np.ndarray) -> np.ndarray:
    std = float(s.std())
    return (s - float(s.mean())) / std if std > 1e-12 else np.zeros_like(s)


def zscore_rows(m: np.ndarray) -> np.ndarray:
    """Row-wise z-scores (rows with no spread become zeros)."""
    mean = m.mean(axis=1, keepdims=True)
    std = m.std(axis=1, keepdims=True)
    return np.where(std > 1e-12, (m - mean) / np.where(std > 1e-12, std, 1.0), 0.0).astype(np.float32)


#: Users scored together in batch recommendation (bounds memory: rows × items floats).
BATCH_USERS = 256


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indexes of the ``k`` best scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Recommender:
    name = "base"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def scores(self, user: str) -> np.ndarray | None:
        """A score per catalog item, or None when this model knows nothing of the user."""
        raise NotImplementedError

    def recommend(self, user: str, k: int) -> list[str]:
        s = self.scores(user)
        if s is None:
            s = self.catalog.popularity
        idx = top_k(s, k, self.catalog.seen(user))
        return [self.catalog.items.ids[i] for i in idx]

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        """Scores for several users at once ([users, items]); unknown users get popularity."""
        return np.stack([s if (s := self.scores(u)) is not None else self.catalog.popularity for u in users]).astype(np.float32)

    def mask_seen(self, users: Sequence[str], scores: np.ndarray) -> None:
        for r, u in enumerate(users):
            seen = self.catalog.seen(u)
            if len(seen):
                scores[r, seen] = -np.inf

    def recommend_many(self, users: Sequence[str], k: int) -> dict[str, list[str]]:
        """Batched :meth:`recommend` (same results, matrix arithmetic)."""
        out: dict[str, list[str]] = {}
        ids = self.catalog.items.ids
        for start in range(0, len(users), BATCH_USERS):
            chunk = list(users[start : start + BATCH_USERS])
            scores = self.score_rows(chunk)
            self.mask_seen(chunk, scores)
            for u, row in zip(chunk, top_k_rows(scores, k), strict=True):
                out[u] = [ids[i] for i in row]
        return out


class Popularity(Recommender):
    name = "popularity"

    def scores(self, user: str) -> np.ndarray | None:
        return self.catalog.popularity


class ALS(Recommender):
    name = "als"

    def __init__(self, catalog: Catalog, train: Interactions, params: ALSParams, seed: int = 42) -> None:
        super().__init__(catalog)
        matrix = user_item_matrix(train, catalog.users, catalog.items)
        self.factors: ALSFactors = train_als(matrix, params, seed)
        self.gram = self.factors.gram()

    def user_vector(self, user: str) -> np.ndarray | None:
        pos = self.catalog.users.pos.get(user)
        if pos is not None:
            return np.asarray(self.factors.user_factors[pos])
        return None

    def fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return fold_in(self.factors.item_factors, self.gram, items, weights, self.factors.params.alpha)

    def scores(self, user: str) -> np.ndarray | None:
        v = self.user_vector(user)
        return None if v is None else np.asarray(self.factors.item_factors @ v)

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        pos = [self.catalog.users.pos.get(u) for u in users]
        known = np.array([p is not None for p in pos])
        rows = np.array([p if p is not None else 0 for p in pos], dtype=np.int64)
        scores = self.factors.user_factors[rows] @ self.factors.item_factors.T
        if not known.all():
            scores[~known] = self.catalog.popularity
        return np.asarray(scores, dtype=np.float32)


class ItemBased(Recommender):
    """A visitor's history through each item's neighbours (:mod:`models.item_based`);
    named after the fit: ``ease`` or ``knn``. Items with a positive score come first, by
    score; the rest by popularity, as the edge fills a slot when the model has no more
    evidence (without that, ties among the zero scores would be ranked arbitrarily)."""

    def __init__(self, catalog: Catalog, train: Interactions, params: ItemParams) -> None:
        super().__init__(catalog)
        self.name = params.kind
        self._history = user_item_matrix(train, catalog.users, catalog.items).astype(np.float32)
        self.neighbours: ItemNeighbours = train_items(self._history, params)
        self._weights = self.neighbours.matrix()
        peak = float(catalog.popularity.max()) if len(catalog.popularity) else 0.0
        self._fill = (catalog.popularity / peak if peak > 0 else catalog.popularity).astype(np.float32)

    def _ranked(self, raw: np.ndarray) -> np.ndarray:
        """Positive scores above every popularity fill (which lies in [0, 1])."""
        return np.where(raw > 0, 1.0 + raw, self._fill).astype(np.float32)

    def scores(self, user: str) -> np.ndarray | None:
        pos = self.catalog.users.pos.get(user)
        if pos is None:
            return None
        return self._ranked(np.asarray((self._history[pos] @ self._weights).toarray()).ravel())

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        pos = [self.catalog.users.pos.get(u) for u in users]
        known = np.array([p is not None for p in pos])
        rows = np.array([p if p is not None else 0 for p in pos], dtype=np.int64)
        scores = self._ranked(np.asarray((self._history[rows] @ self._weights).toarray(), dtype=np.float32))
        if not known.all():
            scores[~known] = self.catalog.popularity
        return scores


class Content(Recommender):
    name = "content"

    def __init__(self, catalog: Catalog, items: Mapping[str, Item], dims: int = 64, seed: int = 42) -> None:
        super().__init__(catalog)
        texts = [items[i].text if i in items else i for i in catalog.items.ids]
        self.model: TextModel = fit_text(texts, dims=dims, seed=seed)

    def scores(self, user: str) -> np.ndarray | None:
        h = self.catalog.history.get(user)
        if h is None:
            return None
        v = user_vector(self.model, h[0], h[1])
        return np.asarray(self.model.item_vectors @ v)

    def known(self, user: str) -> bool:
        return user in self.catalog.history

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(users), self.model.dims), dtype=np.float32)
        known = np.zeros(len(users), dtype=bool)
        for r, u in enumerate(users):
            h = self.catalog.history.get(u)
            if h is not None:
                vectors[r] = user_vector(self.model, h[0], h[1])
                known[r] = True
        scores = vectors @ self.model.item_vectors.T
        if not known.all():
            scores[~known] = self.catalog.popularity
        return np.asarray(scores, dtype=np.float32)


@dataclass(frozen=True)
class BlendWeights:
    als: float
    content: float
    popularity: float

    def as_dict(self) -> dict[str, float]:
        return {"als": self.als, "content": self.content, "popularity": self.popularity}


class Hybrid(Recommender):
    """z-scored scores of each model, weighted and summed; popularity for cold visitors."""

    name = "hybrid"

    def __init__(self, catalog: Catalog, als: ALS | None, content: Content | None, weights: BlendWeights) -> None:
        super().__init__(catalog)
        self.als = als
        self.content = content
        self.weights = weights
        self._pop = _zscore(np.log1p(catalog.popularity))

    def components(self, users: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """Row-z-scored ALS and content scores for ``users`` and which users either knows."""
        known = np.zeros(len(users), dtype=bool)
        z_als = z_content = None
        if self.als is not None:
            z_als = zscore_rows(self.als.score_rows(users))
            known |= np.array([self.als.user_vector(u) is not None for u in users])
        if self.content is not None:
            z_content = zscore_rows(self.content.score_rows(users))
            known |= np.array([self.content.known(u) for u in users])
        return z_als, z_content, known

    def blend_rows(
        self, z_als: np.ndarray | None, z_content: np.ndarray | None, known: np.ndarray, weights: BlendWeights
    ) -> np.ndarray:
        total: np.ndarray = np.broadcast_to(weights.popularity * self._pop, (len(known), len(self._pop))).astype(np.float32)
        if z_als is not None and weights.als:
            total = total + np.float32(weights.als) * z_als
        if z_content is not None and weights.content:
            total = total + np.float32(weights.content) * z_content
        if not known.all():
            total = total.copy()
            total[~known] = self.catalog.popularity
        return total

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        z_als, z_content, known = self.components(users)
        return self.blend_rows(z_als, z_content, known, self.weights)

    def scores(self, user: str) -> np.ndarray | None:
        total = self.weights.popularity * self._pop
        known = False
        for model, w in ((self.als, self.weights.als), (self.content, self.weights.content)):
            if model is None or w == 0:
                continue
            s = model.scores(user)
            if s is not None:
                total = total + w * _zscore(s)
                known = True
        return total if known else None
