"""The stacked hybrid (models/stacking.py): features by hand, the blend learns that the
collaborative score predicts taste on planted data, and its ONNX export scores as
scikit-learn does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from models.als import ALSParams
from models.data import write_interactions
from models.evaluation import score, split
from models.onnx_runtime import OnnxModel
from models.recommenders import ALS, BlendWeights, Catalog, Content, Hybrid, Popularity
from models.stacking import FEATURES, Stacked, _reciprocal_ranks, feature_rows, fit_blend, to_onnx
from models.synthetic import taste_groups
from models.tuning import recommend_all, truth_by_user, validation_split


def test_reciprocal_ranks_by_hand() -> None:
    ranks = _reciprocal_ranks(np.array([[0.1, 0.9, 0.5], [3.0, 3.0, 1.0]], dtype=np.float32))
    assert np.allclose(ranks, [[1 / 3, 1.0, 1 / 2], [1.0, 1 / 2, 1 / 3]])


def test_the_blend_learns_the_planted_taste_and_exports_to_onnx() -> None:
    data = taste_groups(600, 300, 15_000, groups=6, in_group=0.9, seed=11)
    train, test = split(data, "random", 0.75, 11)
    inner, catalog_v, truth_v, users_v = validation_split(train, {}, 11)
    params = ALSParams(factors=16, iterations=8)
    weights = BlendWeights(1.0, 0.0, 0.0)
    hybrid_v = Hybrid(catalog_v, ALS(catalog_v, inner, params), Content(catalog_v, {}), weights)
    blend = fit_blend(hybrid_v, truth_v, users_v)
    coef = dict(zip(FEATURES, blend.coef_[0], strict=True))
    assert coef["als"] > 0.5 and coef["als"] > abs(coef["content"])  # taste, not text: there is none
    catalog = Catalog.build(train)
    hybrid = Hybrid(catalog, ALS(catalog, train, params), Content(catalog, {}), weights)
    stacked = Stacked(catalog, hybrid, blend)
    truth = truth_by_user(test, catalog)
    users = sorted(truth)
    ndcg = {
        m.name: score(recommend_all(m, users, 10), truth, 10, len(catalog.items)).ndcg for m in (Popularity(catalog), stacked)
    }
    assert ndcg["stacked"] > 1.5 * ndcg["popularity"]
    assert set(stacked.weights()) == set(FEATURES)
    # the ONNX blend gives scikit-learn's probabilities
    rows = feature_rows(hybrid, users[:20]).reshape(-1, len(FEATURES))
    onnx_prob = OnnxModel(to_onnx(blend)).run({"features": rows.astype(np.float32)})[1][:, 1]
    assert np.allclose(onnx_prob, blend.predict_proba(rows)[:, 1], atol=1e-5)


def test_p13n_evaluate_reports_the_stacked_hybrid_when_asked(tmp_path: Path) -> None:
    write_interactions(tmp_path / "i.csv", taste_groups(300, 120, 6_000, groups=4, seed=12))
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "evaluate", "--interactions", str(tmp_path / "i.csv"), "--stacked"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert "stacked" in report["models"] and set(report["stacked_weights"]) == set(FEATURES)
