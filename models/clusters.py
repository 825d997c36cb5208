"""Clustering segments: scaled features → KMeans, GaussianMixture or DBSCAN, the best
silhouette winning.

KMeans and mixtures are fitted for every k of the range; the winning pipeline
(StandardScaler + model) is exported with skl2onnx. DBSCAN (:mod:`models.dbscan`, when
asked for) finds its own k, scores its silhouette on non-noise points times the share
of points it keeps, and exports a nearest-core-sample graph whose "noise" answer means
no segment. The edge runs either on the feature vector of :mod:`models.features`.
Each cluster gets a readable label from its dominant features (operators may override
labels in the training config). KMeans' inertia per k is kept for the report's elbow
curve beside the silhouette.
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

from models import dbscan

KINDS = ("kmeans", "gmm")
#: Every kind a training configuration may name (DBSCAN is opt-in: docs/MODELS.md).
ALL_KINDS = ("kmeans", "gmm", "dbscan")
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
    #: KMeans' inertia (within-cluster sum of squares) per k: the elbow curve
    inertia: dict[int, float] = field(default_factory=dict)
    #: the DBSCAN fit when DBSCAN was tried (whether or not it won)
    density: dbscan.DensityModel | None = None


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
    inertia: dict[int, float] = {}
    density: dbscan.DensityModel | None = None
    if "dbscan" in kinds:
        density = dbscan.fit(x, scaler.mean_, scaler.scale_, seed=seed)
        if density is not None:
            curve["dbscan"] = {density.k: density.score}
    for kind in kinds:
        if kind == "dbscan":
            continue
        for k in k_range:
            if k >= len(xs) or k > distinct:
                continue
            model = _model(kind, k, seed).fit(xs)
            if isinstance(model, KMeans):
                inertia[k] = float(model.inertia_)
            labels = model.predict(xs[sample])
            if len(set(labels)) < 2:
                continue
            score = float(silhouette_score(xs[sample], labels))
            curve[kind][k] = score
            if best is None or score > best[0]:
                best = (score, kind, k, model)
    if density is not None and (best is None or density.score > best[0]):
        return _density_result(density, scaler, x, columns, curve, inertia, label_overrides)
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
    return ClusterResult(kind, k, pipeline, names, curve, sizes, inertia, density)


def _density_result(
    density: dbscan.DensityModel,
    scaler: StandardScaler,
    x: np.ndarray,
    columns: Sequence[str],
    curve: dict[str, dict[int, float]],
    inertia: dict[int, float],
    label_overrides: Mapping[str, str] | None,
) -> ClusterResult:
    """DBSCAN won: clusters labelled by their core samples' mean; sizes over every row
    (the noise, no segment, is reported apart in ``density.noise_share``)."""
    centers = np.array([density.cores[density.core_labels == c].mean(axis=0) for c in range(density.k)])
    names = describe(centers, columns)
    if label_overrides:
        names = [label_overrides.get(str(i), name) for i, name in enumerate(names)]
    assigned = density.predict(x)
    sizes = [int((assigned == c).sum()) for c in range(density.k)]
    pipeline = Pipeline([("scale", scaler)])  # what the segment features are scaled with (the graph carries it)
    return ClusterResult("dbscan", density.k, pipeline, names, curve, sizes, inertia, density)


def export(result: ClusterResult, width: int) -> bytes:
    """The winning segment model as ONNX: ``features`` [N, width] → ``label`` [N]."""
    if result.kind == "dbscan" and result.density is not None:
        return dbscan.to_onnx(result.density, width)
    return to_onnx(result.pipeline, width)


def to_onnx(pipeline: Pipeline, width: int) -> bytes:
    """The scaler + cluster pipeline as ONNX: input ``features`` [N, width] → ``label``."""
    from skl2onnx import to_onnx as sk_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = sk_to_onnx(
        pipeline, initial_types=[("features", FloatTensorType([None, width]))], target_opset={"": 17, "ai.onnx.ml": 3}
    )
    data: bytes = onx.SerializeToString()
    return data
