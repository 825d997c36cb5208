"""Semantic item vectors: each item's text (title, description, tags) through the
sentence encoder (models/sentence_encoder.py), so items that *read* alike score alike
even when they share no word and nobody has interacted with them yet.

The encoder's 384 dimensions are reduced to ``DIMS`` (128) by a PCA of the catalog's
own vectors, centred: removing the direction every text shares ranks better on the
cold-start protocol (Online Retail sample recall@10: raw 0.273, centred 0.292), and 128
dimensions keep most of that (0.286) at a third of the bundle and edge memory
(docs/MODELS.md).
Vectors are unit length; an item the catalog does not describe gets a zero vector, so
this model never ranks it (an id is no text). A visitor's query is the weighted mean of
the vectors of what they interacted with, as for the TF-IDF content model; at the edge
a ``"model": "semantic"`` slot uses the session's latest items instead
(models/history.py), through the same top-k graph as every item embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.data import Item
from models.recommenders import Catalog, Content, Recommender, zscore_rows
from models.sentence_encoder import SentenceEncoder
from models.text_model import mean_vector

#: Dimensions the semantic vectors keep (a centred PCA of the catalog's vectors).
DIMS = 128


def item_vectors(encoder: SentenceEncoder, ids: Sequence[str], items: Mapping[str, Item], dims: int = DIMS) -> np.ndarray:
    """[len(ids), ≤ dims] unit vectors; zeros for an item ``items`` does not describe."""
    described = [r for r, i in enumerate(ids) if i in items and items[i].described]
    if not described:
        return np.zeros((len(ids), min(dims, encoder.dims)), dtype=np.float32)
    return reduce(encoder.encode([items[ids[r]].text for r in described]), described, len(ids), dims)


def reduce(encoded: np.ndarray, rows: Sequence[int], n: int, dims: int) -> np.ndarray:
    """``encoded`` (the described items' vectors) projected on its first ``dims``
    principal axes after centring, unit length, at ``rows`` of an [n, dims] matrix."""
    x = encoded.astype(np.float64)
    mean = x.mean(axis=0)
    _, _, axes = np.linalg.svd(x - mean, full_matrices=False)
    projected = (x - mean) @ axes[:dims].T
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    np.divide(projected, norms, out=projected, where=norms > 0)
    out = np.zeros((n, projected.shape[1]), dtype=np.float32)
    out[list(rows)] = projected
    return out


class Semantic(Recommender):
    """Catalog items ranked by cosine to the visitor's history in the encoder's space."""

    name = "semantic"

    def __init__(self, catalog: Catalog, vectors: np.ndarray) -> None:
        super().__init__(catalog)
        self.vectors = vectors

    def scores(self, user: str) -> np.ndarray | None:
        h = self.catalog.history.get(user)
        if h is None:
            return None
        v = mean_vector(self.vectors, h[0], h[1])
        if not v.any():  # only undescribed items in the history
            return None
        return np.asarray(self.vectors @ v, dtype=np.float32)


class TextMix(Recommender):
    """TF-IDF content and semantic scores, each z-scored over the catalog, summed with
    equal weight: words the catalog shares and meaning it does not spell the same."""

    name = "content+semantic"

    def __init__(self, catalog: Catalog, content: Content, semantic: Semantic) -> None:
        super().__init__(catalog)
        self.content = content
        self.semantic = semantic

    def scores(self, user: str) -> np.ndarray | None:
        parts = [s for s in (self.content.scores(user), self.semantic.scores(user)) if s is not None]
        if not parts:
            return None
        return np.asarray(zscore_rows(np.stack(parts)).sum(axis=0), dtype=np.float32)
