"""Feature spec and clustering segments: planted archetypes are recovered; ONNX agrees."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from models.clusters import describe, fit_segments, to_onnx
from models.features import FeatureSpec, default_spec, encode, encode_many, spec_is_known
from models.onnx_runtime import OnnxModel
from models.synthetic import visitor_archetypes


def test_encode_is_deterministic_and_named() -> None:
    spec = default_spec()
    v = encode(spec, {"device": "mobile", "hour": 6, "views": 3, "category_views": {"shoes": 3, "dresses": 1}})
    cols = spec.columns()
    assert len(v) == spec.width == len(cols)
    assert v[cols.index("device=mobile")] == 1.0 and v[cols.index("device=desktop")] == 0.0
    assert v[cols.index("hour_sin")] == np.float32(1.0)
    assert v[cols.index("category_views=shoes")] == np.float32(0.75)
    assert v[cols.index("views")] == np.float32(np.log1p(3))
    assert not encode(spec, {}).any() or encode(spec, {})[cols.index("hour_cos")] == 0.0


def test_spec_hash_is_stable_and_round_trips() -> None:
    spec = default_spec()
    assert FeatureSpec.from_json(spec.to_json()).hash() == spec.hash()
    assert default_spec(["a", "b"]).hash() != spec.hash()
    assert spec_is_known(spec)
    assert not spec_is_known(FeatureSpec(version="99", features=spec.features))


def test_planted_archetypes_are_recovered_and_onnx_labels_agree() -> None:
    rows, truth = visitor_archetypes(3000, k=4, seed=5)
    spec = default_spec()
    x = encode_many(spec, rows)
    result = fit_segments(x, spec.columns(), seed=1)
    assert result.k == 4
    predicted = result.pipeline.predict(x)
    assert adjusted_rand_score(truth, predicted) >= 0.9
    assert set(result.silhouette) == {"kmeans", "gmm"} and len(result.silhouette["kmeans"]) >= 5
    onnx_labels = OnnxModel(to_onnx(result.pipeline, spec.width)).run({"features": x})[0]
    assert (onnx_labels == predicted).all()
    assert len(set(result.labels)) == 4 and sum(result.sizes) == 3000


def test_labels_come_from_dominant_features_and_can_be_overridden() -> None:
    centers = np.array([[2.0, 0.0, 1.0], [0.0, 0.1, 0.0]])
    assert describe(centers, ["views", "carts", "device=mobile"]) == ["views & device=mobile", "average"]
    rows, _ = visitor_archetypes(600, k=3, seed=2)
    spec = default_spec()
    result = fit_segments(
        encode_many(spec, rows), spec.columns(), k_range=(3,), kinds=("kmeans",), label_overrides={"0": "Bargain hunters"}
    )
    assert result.labels[0] == "Bargain hunters"
