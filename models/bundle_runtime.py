"""The models of a verified bundle, ready for per-request use: what the edge decides
with, and what the hub's training gate scores a bundle with (the same code, so a
bundle is judged by the decisions it would make).

ONNX sessions (single-threaded) for the cluster segment and the ALS top-k graph; the
item factors and ``YᵀY + λI`` for exact fold-in of the visitor's session; the item
index. When training chose an item-based model (manifest ``models.recommender`` =
``item``), sessions are scored through its neighbours graph instead; known users
without a session keep their ALS factors. A slot that ranks with item vectors of its
own — the sequence vectors (``"model": "sequence"``, ``seq_topk.onnx``) or the item
texts' sentence embeddings (``"model": "semantic"``, ``sem_topk.onnx``), each shipped
only when a slot asks — scores the session's latest items through that top-k graph.
Loaded once, swapped whole.

The edge turns on :meth:`BundleModels.remember`: every model answer is then kept by its
exact inputs (the segment by the encoded feature vector, recommendations by the
session's items and weights and the exclusions), so a reload, or a page whose visitor
did nothing new, costs a look-up. The answers are pure functions of those inputs and
the memory goes with the models, so a new bundle starts empty and nothing can be stale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from models.als import fold_in_low_rank
from models.bundle import Bundle
from models.features import encode
from models.history import history_vector
from models.onnx_runtime import MASK_PENALTY, NeighboursModel, OnnxModel, TopKModel

#: Slot models that rank with item vectors of their own → their bundle member.
VECTOR_MODELS = {"sequence": "seq_topk.onnx", "semantic": "sem_topk.onnx"}


class BundleModels:
    def __init__(self, bundle: Bundle) -> None:
        self.version = bundle.version
        #: sha256 of the bundle's bytes (set by whoever read them): what the edge compares
        #: with the hub's pointer, so a different bundle under a known version is noticed
        self.sha256 = ""
        self.spec = bundle.feature_spec()
        meta = bundle.manifest.get("models", {})
        self.segment_labels: list[str] = list(meta.get("segments", {}).get("labels", []))
        self.segments = OnnxModel(bundle.files["segments.onnx"]) if "segments.onnx" in bundle.files else None
        # one copy of the factors, read by the session and by fold-in alike
        self.als, self.item_factors = TopKModel.with_embeddings(bundle.files["als_topk.onnx"])
        self.gram = bundle.array("als_gram.npy").astype(np.float64)
        self.gram_inv = np.linalg.inv(self.gram)  # once per model: fold-in is then a k × k solve
        self.alpha = float(meta.get("als", {}).get("alpha", 1.0))
        self.neighbours: NeighboursModel | None = None
        #: the model sessions are recommended with, as decisions name it: "als", or the
        #: item-based model's kind ("ease", "knn")
        self.session_model = "als"
        if meta.get("recommender") == "item" and "item_topk.onnx" in bundle.files:
            self.neighbours = NeighboursModel(bundle.files["item_topk.onnx"])
            self.session_model = str(meta.get("item", {}).get("kind", "item"))
        #: per slot model ("sequence", "semantic"): its top-k graph and item vectors,
        #: when a slot ranks with them
        self.vector_models: dict[str, tuple[TopKModel, np.ndarray]] = {
            model: TopKModel.with_embeddings(bundle.files[member])
            for model, member in VECTOR_MODELS.items()
            if member in bundle.files
        }
        items = bundle.json("items.json")
        self.item_ids: list[str] = list(items["ids"])
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        popularity = items.get("popularity") or [0.0] * len(self.item_ids)
        #: the catalog by popularity, most first (what a recommend slot fills up with)
        self.popular: list[str] = [self.item_ids[i] for i in np.argsort(-np.asarray(popularity), kind="stable")]
        self.content_doc: dict[str, Any] | None = bundle.json("content.json") if "content.json" in bundle.files else None
        self._vec = np.zeros((1, self.spec.width), dtype=np.float32)
        self._memos: dict[str, Any] = {}
        #: (hits, misses) of memories emptied by :meth:`forget`, so the counts only grow
        self._forgotten: dict[str, tuple[int, int]] = {}
        self._segment_of: Callable[[bytes], str] = self._segment_label
        self._recommend_of: Callable[[tuple[tuple[str, float], ...], tuple[str, ...]], tuple[str, ...]] = self._recommend
        self._next_of: Callable[[str, tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = self._recommend_next
        self._for_of: Callable[[tuple[float, ...], tuple[str, ...]], tuple[str, ...]] = self._recommend_for

    def remember(self, entries: int) -> None:
        """Keep up to ``entries`` answers per call (segment, recommend, recommend_next,
        recommend_for) by their exact inputs, least recently used out first; 0: none."""
        if entries <= 0:
            return
        memo = lru_cache(maxsize=entries)
        self._segment_of = self._memos["segment"] = memo(self._segment_label)
        self._recommend_of = self._memos["recommend"] = memo(self._recommend)
        self._next_of = self._memos["recommend_next"] = memo(self._recommend_next)
        self._for_of = self._memos["recommend_for"] = memo(self._recommend_for)

    def forget(self) -> None:
        """Drop every remembered answer (an erasure: profile factors are among the keys)."""
        self._forgotten = self.memo_stats()
        for cached in self._memos.values():
            cached.cache_clear()

    def memo_stats(self) -> dict[str, tuple[int, int]]:
        """Per call: (hits, misses) since these models were loaded (empty when off)."""
        out = {}
        for name, cached in self._memos.items():
            info = cached.cache_info()
            hits, misses = self._forgotten.get(name, (0, 0))
            out[name] = (hits + info.hits, misses + info.misses)
        return out

    def segment(self, attrs: Mapping[str, Any]) -> str:
        """The visitor's cluster segment label ("" without a segment model, and for a
        visitor a density model calls noise: label -1)."""
        if self.segments is None:
            return ""
        encode(self.spec, attrs, self._vec[0])
        return self._segment_of(self._vec.tobytes())

    def _segment_label(self, features: bytes) -> str:
        vec = np.frombuffer(features, dtype=np.float32).reshape(1, -1)
        assert self.segments is not None
        label = int(self.segments.run({"features": vec})[0][0])
        if label < 0:
            return ""
        return self.segment_labels[label] if label < len(self.segment_labels) else str(label)

    def recommend(self, interactions: Sequence[tuple[str, float]], exclude: Sequence[str]) -> list[str]:
        """Items for a visitor from their session (``(item, weight)`` tuples), best
        first: through the item-based model's neighbours when training chose it, else
        ALS fold-in + top-k."""
        return list(self._recommend_of(tuple(interactions), tuple(exclude)))

    def _recommend(self, interactions: tuple[tuple[str, float], ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
        known = [(self.index[i], w) for i, w in interactions if i in self.index]
        if not known:
            return ()
        idx = np.fromiter((i for i, _ in known), dtype=np.int64, count=len(known))
        weights = np.fromiter((w for _, w in known), dtype=np.float64, count=len(known))
        if self.neighbours is not None:
            top, scores = self.neighbours.top(idx, weights, self._excluded(exclude))
            ids = self.item_ids
            # an item no history item leads to scores 0: no evidence, the slot's fallback fills
            return tuple(ids[i] for i, s in zip(top.tolist(), scores.tolist(), strict=True) if s > 0)
        user = fold_in_low_rank(self.item_factors, self.gram_inv, idx, weights, self.alpha)
        return self._als_top(user, exclude)

    def ranked(self, interactions: Sequence[tuple[str, float]], exclude: Sequence[str], k: int) -> list[str]:
        """The ``k`` items a recommend slot shows for the session: the model's, then the
        most popular ones (what the training gate scores)."""
        out = self.recommend(interactions, exclude)[:k]
        if len(out) < k:
            taken = {*out, *exclude}
            out += [i for i in self.popular if i not in taken][: k - len(out)]
        return out

    def recommend_next(self, recent: Sequence[str], exclude: Sequence[str], model: str = "sequence") -> list[str]:
        """Items for the session's latest items (oldest first) by ``model``'s vectors
        ("sequence": what comes next; "semantic": what reads alike) — never the
        session's own items; [] without those vectors or a session item that has one."""
        if model not in self.vector_models:
            return []
        return list(self._next_of(model, tuple(recent), tuple(exclude)))

    def _recommend_next(self, model: str, recent: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
        graph, vectors = self.vector_models[model]
        known = [self.index[i] for i in recent if i in self.index]
        user = history_vector(vectors, known)
        if user is None:
            return ()
        top, scores = graph.top(user, self._excluded([*exclude, *recent]))
        ids = self.item_ids
        # an item without a vector scores 0: no evidence, the slot's fallback fills
        return tuple(ids[i] for i, s in zip(top.tolist(), scores.tolist(), strict=True) if s > 0)

    def recommend_for(self, factors: Sequence[float], exclude: Sequence[str]) -> list[str]:
        """Items for a known user from the factors their profile carries."""
        return list(self._for_of(tuple(factors), tuple(exclude)))

    def _recommend_for(self, factors: tuple[float, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
        user = np.asarray(factors, dtype=np.float32)
        if user.shape != (self.item_factors.shape[1],):
            return ()  # factors of another model: ignore rather than guess
        return self._als_top(user, exclude)

    def _excluded(self, exclude: Sequence[str]) -> np.ndarray:
        return np.array(sorted({self.index[e] for e in exclude if e in self.index}), dtype=np.int64)

    def _als_top(self, user: np.ndarray, exclude: Sequence[str]) -> tuple[str, ...]:
        top, scores = self.als.top(user, self._excluded(exclude))
        ids = self.item_ids
        return tuple(ids[i] for i, s in zip(top.tolist(), scores.tolist(), strict=True) if s > -MASK_PENALTY / 2)
