"""Clustering segments: scaled features → KMeans or GaussianMixture, k by silhouette.

The winning pipeline (StandardScaler + model) is exported with skl2onnx; the edge runs
it on the feature vector of :mod:`models.features`. Each cluster gets a readable label
from its dominant features (operators may override labels in the training config).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

KINDS = ("kmeans", "gmm")
#: Silhouette is quadratic in rows: it is computed on a sample of this size.
SILHOUETTE_SAMPLE = 5000


@dataclass
class ClusterResult:
    kind: str
    k: int
    pipeline: Pipeline
    labels: list[str]
    silhouette: dict[str, dict[int, float]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)


def _model(kind: str, k: int, seed: int) -> KMeans | GaussianMixture:
    if kind == "kmeans":
        return KMeans(n_clusters=k, n_init=4, random_state=seed)
    return GaussianMixture(n_components=k, covariance_type="diag", random_state=seed, reg_covar=1e-4)


def describe(centers_scaled: np.ndarray, columns: Sequence[str], top: int = 2) -> list[str]:
    """Label each cluster by the features most above the population mean (z-scores)."""
    labels = []
    for center in centers_scaled:
        order = np.argsort(-center)[:top]
        parts = [columns[j] for j in order if center[j] > 0.25]
        labels.append(" & ".join(parts) if parts else "average")
    seen: dict[str, int] = {}
    unique = []
    for label in labels:  # keep labels distinct so operators can tell clusters apart
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def fit_segments(
    x: np.ndarray,
    columns: Sequence[str],
    k_range: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    kinds: Sequence[str] = KINDS,
    seed: int = 42,
    label_overrides: Mapping[str, str] | None = None,
) -> ClusterResult:
    """Fit every (kind, k), keep the best silhouette; report the whole curve."""
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(xs), size=min(SILHOUETTE_SAMPLE, len(xs)), replace=False)
    curve: dict[str, dict[int, float]] = {kind: {} for kind in kinds}
    best: tuple[float, str, int, KMeans | GaussianMixture] | None = None
    distinct = len(np.unique(xs, axis=0))  # k beyond the distinct rows cannot be fitted
    for kind in kinds:
        for k in k_range:
            if k >= len(xs) or k > distinct:
                continue
            model = _model(kind, k, seed).fit(xs)
            labels = model.predict(xs[sample])
            if len(set(labels)) < 2:
                continue
            score = float(silhouette_score(xs[sample], labels))
            curve[kind][k] = score
            if best is None or score > best[0]:
                best = (score, kind, k, model)
    if best is None:
        raise ValueError("no clustering could be fitted (too few distinct rows)")
    _, kind, k, model = best
    pipeline = Pipeline([("scale", scaler), ("cluster", model)])
    centers = model.cluster_centers_ if isinstance(model, KMeans) else model.means_
    names = describe(np.asarray(centers), columns)
    if label_overrides:
        names = [label_overrides.get(str(i), name) for i, name in enumerate(names)]
    assigned = model.predict(xs)
    sizes = [int((assigned == c).sum()) for c in range(k)]
    return ClusterResult(kind, k, pipeline, names, curve, sizes)


def to_onnx(pipeline: Pipeline, width: int) -> bytes:
    """The scaler + cluster pipeline as ONNX: input ``features`` [N, width] → ``label``."""
    from skl2onnx import to_onnx as sk_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = sk_to_onnx(
        pipeline, initial_types=[("features", FloatTensorType([None, width]))], target_opset={"": 17, "ai.onnx.ml": 3}
    )
    data: bytes = onx.SerializeToString()
    return data
