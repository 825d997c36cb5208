"""The models of a verified bundle, ready for per-request use: what the edge decides
with, and what the hub's training gate scores a bundle with (the same code, so a
bundle is judged by the decisions it would make).

ONNX sessions (single-threaded) for the cluster segment and the ALS top-k graph; the
item factors and ``YᵀY + λI`` for exact fold-in of the visitor's session; the item
index. Loaded once, swapped whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.als import fold_in_low_rank
from models.bundle import Bundle
from models.features import encode
from models.onnx_runtime import MASK_PENALTY, OnnxModel, TopKModel, topk_embeddings


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
        self.als = TopKModel(bundle.files["als_topk.onnx"])
        self.item_factors = topk_embeddings(bundle.files["als_topk.onnx"])
        self.gram = bundle.array("als_gram.npy").astype(np.float64)
        self.gram_inv = np.linalg.inv(self.gram)  # once per model: fold-in is then a k × k solve
        self.alpha = float(meta.get("als", {}).get("alpha", 1.0))
        items = bundle.json("items.json")
        self.item_ids: list[str] = list(items["ids"])
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.content_doc: dict[str, Any] | None = bundle.json("content.json") if "content.json" in bundle.files else None
        self._vec = np.zeros((1, self.spec.width), dtype=np.float32)

    def segment(self, attrs: Mapping[str, Any]) -> str:
        """The visitor's cluster segment label ("" without a segment model)."""
        if self.segments is None:
            return ""
        encode(self.spec, attrs, self._vec[0])
        label = int(self.segments.run({"features": self._vec})[0][0])
        return self.segment_labels[label] if 0 <= label < len(self.segment_labels) else str(label)

    def recommend(self, interactions: Sequence[tuple[str, float]], exclude: Sequence[str]) -> list[str]:
        """Items for a visitor from their session (fold-in + ALS top-k), best first."""
        known = [(self.index[i], w) for i, w in interactions if i in self.index]
        if not known:
            return []
        idx = np.fromiter((i for i, _ in known), dtype=np.int64, count=len(known))
        weights = np.fromiter((w for _, w in known), dtype=np.float64, count=len(known))
        user = fold_in_low_rank(self.item_factors, self.gram_inv, idx, weights, self.alpha)
        return _top_items(self, user, exclude)

    def recommend_for(self, factors: Sequence[float], exclude: Sequence[str]) -> list[str]:
        """Items for a known user from the factors their profile carries."""
        user = np.asarray(factors, dtype=np.float32)
        if user.shape != (self.item_factors.shape[1],):
            return []  # factors of another model: ignore rather than guess
        return _top_items(self, user, exclude)


def _top_items(models: BundleModels, user: np.ndarray, exclude: Sequence[str]) -> list[str]:
    excluded = np.array(sorted({models.index[e] for e in exclude if e in models.index}), dtype=np.int64)
    top, scores = models.als.top(user, excluded)
    ids = models.item_ids
    return [ids[i] for i, s in zip(top.tolist(), scores.tolist(), strict=True) if s > -MASK_PENALTY / 2]
