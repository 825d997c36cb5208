"""DBSCAN segments (models/dbscan.py): eps from the k-distance knee, the edge's graph
gives scikit-learn's labels for the core samples and noise (no segment) far from them,
the kind competes with KMeans and mixtures, and a trained bundle serves it at the edge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from models import dbscan
from models.bundle import load_public_key, open_bundle
from models.bundle_runtime import BundleModels
from models.clusters import export, fit_segments
from models.features import default_spec, encode_many
from models.onnx_runtime import OnnxModel
from models.synthetic import visitor_archetypes


def test_the_knee_is_the_point_farthest_below_the_chord() -> None:
    # scaled: x 0 .2 .4 .6 .8 1, y 0 .01 .02 .03 .5 1 → x - y peaks at index 3
    assert dbscan.knee(np.array([0.0, 0.1, 0.2, 0.3, 5.0, 10.0])) == 3
    assert dbscan.knee(np.array([1.0, 1.0, 1.0])) == 0 and dbscan.knee(np.array([0.0, 1.0])) == 0


def blobs_with_an_outlier() -> np.ndarray:
    rng = np.random.default_rng(3)
    a = rng.normal((0.0, 0.0), 0.05, size=(60, 2))
    b = rng.normal((3.0, 3.0), 0.05, size=(60, 2))
    return np.vstack([a, b, [[20.0, -20.0]]])


def test_two_dense_groups_and_an_outlier_by_hand() -> None:
    x = blobs_with_an_outlier()
    model = dbscan.fit(x, x.mean(axis=0), x.std(axis=0), min_samples=5)
    assert model is not None and model.k == 2 and model.noise_share == pytest.approx(1 / 121)
    labels = model.predict(x)
    assert len(set(labels[:60])) == 1 and len(set(labels[60:120])) == 1 and labels[0] != labels[60]
    assert labels[120] == -1  # the outlier: no segment
    graph = OnnxModel(dbscan.to_onnx(model, 2))
    assert (graph.run({"features": x.astype(np.float32)})[0] == labels).all()
    # a new visitor near a group takes it; one far from both gets none
    near, far = np.array([[0.02, -0.01], [8.0, 8.0]], dtype=np.float32)
    assert graph.run({"features": near[None, :]})[0][0] == labels[0]
    assert graph.run({"features": far[None, :]})[0][0] == -1


def test_edge_labels_equal_scikit_learns_for_the_core_samples() -> None:
    rows, truth = visitor_archetypes(3000, k=4, seed=5)
    spec = default_spec()
    x = encode_many(spec, rows)
    result = fit_segments(x, spec.columns(), seed=1, kinds=("kmeans", "gmm", "dbscan"))
    model = result.density
    assert model is not None and len(model.rows) == 3000
    # scikit-learn's own fit with the chosen eps, on the same scaled rows
    xs = (x[model.rows] - model.mean) / model.scale
    reference = DBSCAN(eps=model.eps, min_samples=model.min_samples).fit(xs)
    assert (reference.core_sample_indices_ == model.core_indices).all()
    cores = model.rows[model.core_indices]
    edge = OnnxModel(dbscan.to_onnx(model, spec.width)).run({"features": x[cores]})[0]
    assert (edge == reference.labels_[reference.core_sample_indices_]).all()
    # the archetypes are found (DBSCAN may split one), and the silhouette chose KMeans here
    kept = model.labels >= 0
    assert adjusted_rand_score(truth[model.rows][kept], model.labels[kept]) >= 0.9
    assert result.kind == "kmeans" and set(result.silhouette) == {"kmeans", "gmm", "dbscan"}
    assert model.score == model.silhouette * (1 - model.noise_share) < max(result.silhouette["kmeans"].values())
    # the elbow: inertia falls with k, and flattens after the planted 4
    inertia = result.inertia
    assert list(inertia) == sorted(inertia) and all(inertia[k] > inertia[k + 1] for k in list(inertia)[:-1])
    assert inertia[3] - inertia[4] > 5 * (inertia[4] - inertia[5])


def test_dbscan_alone_is_exported_with_its_noise_class() -> None:
    x = blobs_with_an_outlier()
    result = fit_segments(x, ["a", "b"], kinds=("dbscan",))
    assert result.kind == "dbscan" and result.k == 2 and sum(result.sizes) == 120  # the outlier is in no segment
    labels = OnnxModel(export(result, 2)).run({"features": x.astype(np.float32)})[0]
    assert labels[-1] == -1 and set(labels[:-1]) == {0, 1}


def test_a_bundle_trained_with_dbscan_segments_serves_no_segment_for_noise(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "p13n", "keys", "generate", str(keys)], check=True, capture_output=True)
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "train", "--generate", "--no-tune", "--out", str(tmp_path / "out"),
         "--key", str(keys / "bundle-signing.key"), "--segment-kinds", "dbscan"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.loads(Path(out["report"]).read_text())
    assert report["segments"]["kind"] == "dbscan" and report["segments"]["dbscan"]["noise_share"] < 0.5
    bundle = open_bundle(Path(out["bundle"]).read_bytes(), load_public_key((keys / "bundle-signing.pub").read_bytes()))
    models = BundleModels(bundle)
    # the generated profiles (--generate trains on these archetypes, seed 42) mostly get a segment
    typical, _ = visitor_archetypes(100, k=4, seed=42)
    served = [models.segment(profile) for profile in typical]
    assert set(served) - {""} <= set(models.segment_labels) and sum(1 for s in served if s) >= 80
    # a visitor unlike any profile trained on: noise, so no segment (not "-1")
    assert models.segment({"views": 10_000, "carts": 5_000, "purchases": 9_000, "device": "tablet", "hour": 4}) == ""
    html = Path(out["html"]).read_text()
    assert "DBSCAN k-distance curve" in html and "KMeans elbow" not in html
    bad = subprocess.run(
        [sys.executable, "-m", "p13n", "train", "--generate", "--out", str(tmp_path / "o2"),
         "--key", str(keys / "bundle-signing.key"), "--segment-kinds", "kmeans,optics"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and "--segment-kinds" in bad.stderr
