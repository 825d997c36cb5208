"""DBSCAN segments: density clusters with a noise class, servable at the edge.

DBSCAN has no ``predict``; a new visitor takes the cluster of the nearest **core
sample** when it lies within ``eps`` of it, else no segment (noise) — the standard
extension, exact for the core samples themselves. The fit:

- ``min_samples`` fixed (default 10), ``eps`` read off the k-distance curve: each
  point's distance to its ``min_samples``-th nearest neighbour (itself included, as
  scikit-learn counts), sorted; ``eps`` is the knee — the point farthest below the
  chord from the curve's first to its last point (both axes scaled to [0, 1]);
- fitted on at most ``FIT_SAMPLE`` profiles (DBSCAN's neighbourhoods grow with the
  square of the rows in dense data, and the edge scans every core sample);
- scored by the silhouette of the non-noise points times the share of points not noise,
  so a clustering cannot win by calling the hard half of the visitors noise.

:func:`to_onnx` builds the edge's graph by hand (scale, squared distances to every core
sample, nearest one, within ``eps`` → its cluster, else -1): input ``features``
[N, width] → output ``label`` [N] (int64), the same interface as the KMeans and mixture
pipelines exported with skl2onnx.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from sklearn.cluster import DBSCAN
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from models.onnx_graphs import serialize

#: Profiles DBSCAN is fitted on at most (a random sample beyond).
FIT_SAMPLE = 5000
MIN_SAMPLES = 10


@dataclass
class DensityModel:
    eps: float
    min_samples: int
    mean: np.ndarray
    scale: np.ndarray
    #: core samples (scaled) and their cluster
    cores: np.ndarray
    core_labels: np.ndarray
    #: every fitted row's label (-1: noise); which rows of ``x`` were fitted, and which
    #: of those are core samples
    labels: np.ndarray
    rows: np.ndarray
    core_indices: np.ndarray
    k_distances: np.ndarray
    noise_share: float
    silhouette: float
    score: float

    @property
    def k(self) -> int:
        return int(self.core_labels.max()) + 1 if len(self.core_labels) else 0

    def predict(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """The edge's rule in numpy (the ONNX graph computes the same), ``chunk`` rows
        at a time (a row's distances to every core sample are a row of the matrix)."""
        xs = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        core_norms = (self.cores**2).sum(axis=1)
        out = np.empty(len(xs), dtype=np.int64)
        for start in range(0, len(xs), chunk):
            part = xs[start : start + chunk]
            d2 = (part**2).sum(axis=1)[:, None] - 2.0 * part @ self.cores.T + core_norms[None, :]
            nearest = d2.argmin(axis=1)
            within = d2[np.arange(len(part)), nearest] <= self.eps**2 * (1 + 1e-5) + 1e-9
            out[start : start + chunk] = np.where(within, self.core_labels[nearest], -1)
        return out


def knee(values: np.ndarray) -> int:
    """Index of the knee of an increasing curve: farthest below its chord, both axes
    scaled to [0, 1] (0 for a flat or too short curve)."""
    y = np.asarray(values, dtype=np.float64)
    if len(y) < 3 or y[-1] <= y[0]:
        return 0
    xs = np.linspace(0.0, 1.0, len(y))
    ys = (y - y[0]) / (y[-1] - y[0])
    return int(np.argmax(xs - ys))


def k_distances(xs: np.ndarray, min_samples: int) -> np.ndarray:
    """Each row's distance to its ``min_samples``-th nearest row (itself first), sorted."""
    nn = NearestNeighbors(n_neighbors=min(min_samples, len(xs))).fit(xs)
    dist, _ = nn.kneighbors(xs)
    out: np.ndarray = np.sort(dist[:, -1])
    return out


def fit(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, seed: int = 42, min_samples: int = MIN_SAMPLES
) -> DensityModel | None:
    """DBSCAN on ``x`` scaled by ``mean``/``scale``; None when it finds fewer than two
    clusters (every visitor one dense blob, or all noise)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(FIT_SAMPLE, len(x)), replace=False) if len(x) > FIT_SAMPLE else np.arange(len(x))
    xs = (np.asarray(x, dtype=np.float64)[rows] - mean) / scale
    if len(xs) <= min_samples:
        return None
    curve = k_distances(xs, min_samples)
    positive = curve[curve > 0]
    if not len(positive):
        return None
    eps = float(max(curve[knee(curve)], positive.min()))
    model = DBSCAN(eps=eps, min_samples=min_samples).fit(xs)
    labels = model.labels_
    clusters = set(labels.tolist()) - {-1}
    if len(clusters) < 2:
        return None
    kept = labels >= 0
    noise = float(1.0 - kept.mean())
    sample = rng.choice(np.flatnonzero(kept), size=min(FIT_SAMPLE, int(kept.sum())), replace=False)
    silhouette = float(silhouette_score(xs[sample], labels[sample]))
    cores = model.core_sample_indices_
    return DensityModel(
        eps=eps,
        min_samples=min_samples,
        mean=np.asarray(mean, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        cores=xs[cores],
        core_labels=labels[cores].astype(np.int64),
        labels=labels,
        rows=rows,
        core_indices=cores,
        k_distances=curve,
        noise_share=noise,
        silhouette=silhouette,
        score=silhouette * (1.0 - noise),
    )


def to_onnx(model: DensityModel, width: int) -> bytes:
    """``features`` [N, width] → ``label`` [N]: the nearest core sample's cluster when
    within ``eps``, else -1."""
    cores = model.cores.astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "cores_t"], ["dot"]),  # [N, M]
        helper.make_node("Mul", ["scaled", "scaled"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "axis1"], ["norms"], keepdims=1),  # [N, 1]
        helper.make_node("Mul", ["dot", "minus_two"], ["cross"]),
        helper.make_node("Add", ["norms", "cross"], ["partial"]),
        helper.make_node("Add", ["partial", "core_norms"], ["d2"]),  # ||x||² − 2 x·c + ||c||²
        helper.make_node("ArgMin", ["d2"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("ReduceMin", ["d2"], ["closest"], axes=[1], keepdims=0),
        helper.make_node("Gather", ["core_labels", "nearest"], ["cluster"], axis=0),
        helper.make_node("LessOrEqual", ["closest", "eps2"], ["within"]),
        helper.make_node("Where", ["within", "cluster", "noise"], ["label"]),
    ]
    inits = [
        numpy_helper.from_array(model.mean.astype(np.float32).reshape(1, width), "mean"),
        numpy_helper.from_array(model.scale.astype(np.float32).reshape(1, width), "scale"),
        numpy_helper.from_array(np.ascontiguousarray(cores.T), "cores_t"),
        numpy_helper.from_array((cores.astype(np.float64) ** 2).sum(axis=1).astype(np.float32).reshape(1, -1), "core_norms"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(-2.0, dtype=np.float32), "minus_two"),
        # a little slack: the expansion above loses a few ulps against sklearn's distances
        numpy_helper.from_array(np.array(model.eps**2 * (1 + 1e-5) + 1e-9, dtype=np.float32), "eps2"),
        numpy_helper.from_array(model.core_labels.astype(np.int64), "core_labels"),
        numpy_helper.from_array(np.array(-1, dtype=np.int64), "noise"),
    ]
    graph = helper.make_graph(
        nodes,
        "dbscan_segments",
        inputs=[helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        outputs=[helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
        initializer=inits,
    )
    return serialize(graph)
