"""Sequence embeddings: item vectors learned from the order visitors view and buy items
(skip-gram Word2Vec over their sessions, gensim), so the items a visitor just saw score
"what comes next".

A visitor's interactions, ordered by time, are cut into sessions wherever 30 minutes
pass without one (``SESSION_GAP_S``); each session is a sentence of item ids. Item
vectors are L2-normalised; a visitor's next-item vector is the recency-weighted mean of
their last items' vectors (models/history.py, the edge's code too), and items score by
cosine — the same dot-product top-k an edge already runs for ALS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.data import Interactions
from models.history import history_vector
from models.recommenders import Catalog, Recommender

SESSION_GAP_S = 1800.0


@dataclass(frozen=True)
class SequenceParams:
    dims: int = 32
    window: int = 3
    negative: int = 10
    epochs: int = 20
    min_count: int = 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def ordered_items(data: Interactions) -> dict[str, list[tuple[float, str]]]:
    """Each user's (time, item), oldest first; rows without a time keep file order."""
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    for n, (user, item, t) in enumerate(zip(data.users.tolist(), data.items.tolist(), data.timestamps.tolist(), strict=True)):
        by_user.setdefault(str(user), []).append((float(t) if t == t else float("-inf"), n, str(item)))
    return {u: [(t, i) for t, _, i in sorted(rows)] for u, rows in by_user.items()}


def sessions(data: Interactions, gap_s: float = SESSION_GAP_S) -> list[list[str]]:
    """Item sequences cut at ``gap_s`` of inactivity (consecutive repeats collapsed);
    single-item sessions carry no order and are dropped."""
    out: list[list[str]] = []
    for rows in ordered_items(data).values():
        current: list[str] = []
        last = float("-inf")
        for t, item in rows:
            if current and t - last > gap_s:
                out.append(current)
                current = []
            if not current or current[-1] != item:
                current.append(item)
            last = t
        if current:
            out.append(current)
    return [s for s in out if len(s) > 1]


def fit_vectors(catalog: Catalog, train: Interactions, params: SequenceParams, seed: int = 42) -> np.ndarray:
    """[items, dims] unit vectors in the catalog's order (zeros for an item never seen in
    a session of two or more)."""
    from gensim.models import Word2Vec

    sentences = sessions(train)
    vectors = np.zeros((len(catalog.items), params.dims), dtype=np.float32)
    if not sentences:
        return vectors
    model = Word2Vec(
        sentences,
        vector_size=params.dims,
        window=params.window,
        negative=params.negative,
        epochs=params.epochs,
        min_count=params.min_count,
        sg=1,
        workers=1,  # with one worker and a seed, the same data gives the same vectors
        seed=seed,
    )
    for item in model.wv.index_to_key:
        j = catalog.items.pos.get(item)
        if j is not None:
            vectors[j] = model.wv[item]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


class SequenceModel(Recommender):
    """Next items from a visitor's latest items (their training history, in order)."""

    name = "word2vec"

    def __init__(self, catalog: Catalog, train: Interactions, params: SequenceParams | None = None, seed: int = 42) -> None:
        super().__init__(catalog)
        self.params = params or SequenceParams()
        self.vectors = fit_vectors(catalog, train, self.params, seed)
        index = catalog.items.pos
        self.history = {u: [index[i] for _, i in rows if i in index] for u, rows in ordered_items(train).items()}

    def scores(self, user: str) -> np.ndarray | None:
        v = history_vector(self.vectors, self.history.get(user, []))
        return None if v is None else self.vectors @ v
