"""Item-based recommenders: EASE's closed form, item-kNN's similarities, the edge graph
against the training arithmetic, and the choice of the served model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from models.als import ALSParams
from models.bundle import build_bundle, generate_key, load_private_key, npy_bytes, open_bundle
from models.bundle_runtime import BundleModels
from models.evaluation import score, split
from models.features import default_spec
from models.item_based import ItemParams, scores, train_items
from models.onnx_graphs import neighbours_graph, topk_graph
from models.onnx_runtime import NeighboursModel
from models.recommenders import ALS, Catalog, ItemBased, Popularity
from models.synthetic import taste_groups
from models.tuning import recommend_all, select, truth_by_user


def _binary(users: int, items: int, density: float, seed: int) -> sp.csr_matrix:
    x = sp.random(users, items, density=density, random_state=seed, format="csr")
    x.data[:] = 1.0
    return x


def test_ease_is_the_ridge_regression_of_each_item_on_the_others() -> None:
    # EASE's B[:, j] minimises ‖x_j − X b‖² + λ‖b‖² with b_j = 0: solve that directly
    x = _binary(60, 12, 0.3, 1)
    lam = 5.0
    nb = train_items(x, ItemParams(kind="ease", l2=lam, neighbours=100))
    b = nb.matrix().toarray()
    dense = x.toarray()
    for j in range(12):
        others = [i for i in range(12) if i != j]
        a = dense[:, others]
        direct = np.linalg.solve(a.T @ a + lam * np.eye(11), a.T @ dense[:, j])
        assert np.allclose(b[others, j], direct, atol=1e-5)
        assert b[j, j] == 0.0
    assert nb.index.shape == (12, 11)  # a small catalog keeps every weight: exact EASE


def test_item_knn_is_shrunk_cosine_and_keeps_the_strongest_neighbours() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=np.float64))
    nb = train_items(x, ItemParams(kind="knn", neighbours=1, shrink=1.0))
    # item 0 co-occurs with 1 twice (norms √2, √3) and with 2 once: 2 / (√6 + 1)
    assert nb.index[0, 0] == 1 and nb.weight[0, 0] == pytest.approx(2 / (np.sqrt(6) + 1), rel=1e-6)
    assert nb.weight[3, 0] == 0.0 and nb.index[3, 0] == 3  # no co-occurrence: padded, weight 0
    with pytest.raises(ValueError, match="unknown item model"):
        train_items(x, ItemParams(kind="slim"))


@pytest.mark.parametrize("kind,items", [("ease", 40), ("ease", 700), ("knn", 900)])
def test_the_edge_graph_scores_like_training(kind: str, items: int) -> None:
    x = _binary(500, items, 0.03, 2)
    nb = train_items(x, ItemParams(kind=kind))
    model = NeighboursModel(neighbours_graph(nb.index, nb.weight, 20))
    rng = np.random.default_rng(0)
    for _ in range(20):
        history = rng.choice(items, size=5, replace=False)
        weights = rng.choice([1.0, 2.0, 8.0], size=5).astype(np.float32)
        top, got = model.top(history, weights, history[:2])
        expected = scores(nb, history, weights)
        expected[history[:2]] = -1e30
        assert np.allclose(got, np.sort(expected)[::-1][:20], atol=1e-4)
        assert not set(top.tolist()) & set(history[:2].tolist())
        assert np.allclose(expected[top], got, atol=1e-4)


def test_item_based_learns_planted_tastes_and_the_choice_follows_validation() -> None:
    data = taste_groups(800, 300, 24_000, groups=10, in_group=0.9, seed=5)
    train, test = split(data, "stratified-item", 0.75, 42)
    catalog = Catalog.build(train)
    truth = truth_by_user(test, catalog)
    users = sorted(truth)
    pop = score(recommend_all(Popularity(catalog), users, 10), truth, 10, len(catalog.items))
    ease = score(recommend_all(ItemBased(catalog, train, ItemParams(kind="ease")), users, 10), truth, 10, len(catalog.items))
    assert ease.ndcg > 2 * pop.ndcg
    tuned = select(train, {}, 10, 42)
    assert set(tuned.validation) == {"als", "ease"}
    assert tuned.recommender == ("item" if tuned.validation["ease"] > tuned.validation["als"] else "als")


def _bundle(recommender: str) -> tuple[BundleModels, Catalog]:
    data = taste_groups(300, 60, 6_000, groups=3, in_group=0.95, seed=7)
    catalog = Catalog.build(data)
    als = ALS(catalog, data, ALSParams(factors=8, iterations=5))
    files = {
        "items.json": json.dumps({"ids": catalog.items.ids, "popularity": catalog.popularity.tolist()}).encode(),
        "als_topk.onnx": topk_graph(als.factors.item_factors, 50),
        "als_gram.npy": npy_bytes(als.gram.astype(np.float32)),
    }
    models: dict[str, object] = {"als": {"alpha": 10.0}}
    if recommender == "item":
        nb = ItemBased(catalog, data, ItemParams(kind="ease", l2=50.0)).neighbours
        files["item_topk.onnx"] = neighbours_graph(nb.index, nb.weight, 50)
        models.update(recommender="item", item=nb.params.as_dict())
    key = load_private_key(generate_key()[0])
    blob = build_bundle(files, version=1, spec=default_spec(), metrics={}, models=models, private_key=key)
    return BundleModels(open_bundle(blob, key.public_key())), catalog


def test_a_bundle_that_chose_the_item_model_recommends_sessions_with_it() -> None:
    models, catalog = _bundle("item")
    assert models.session_model == "ease" and models.neighbours is not None
    group0 = [f"i{j}" for j in range(20)]  # taste slices: i0..i19, i20..i39, i40..i59
    recs = models.recommend([(group0[0], 1.0), (group0[1], 2.0)], [group0[0], group0[1], group0[2]])
    assert recs and not {group0[0], group0[1], group0[2]} & set(recs)
    assert sum(r in group0 for r in recs[:5]) >= 4  # the session's taste
    # the same as the training arithmetic: scores > 0 only, best first
    nb = ItemBased(catalog, taste_groups(300, 60, 6_000, groups=3, in_group=0.95, seed=7), ItemParams(kind="ease", l2=50.0))
    pos = [catalog.items.pos[i] for i in group0[:3]]
    expected = scores(nb.neighbours, np.array(pos[:2]), np.array([1.0, 2.0], dtype=np.float32))
    expected[pos] = -np.inf
    order = [catalog.items.ids[i] for i in np.argsort(-expected, kind="stable") if expected[i] > 0][:50]
    assert recs == order
    # known users without a session keep their ALS factors
    assert models.recommend_for(np.ones(8, dtype=np.float32).tolist(), [])
    assert _bundle("als")[0].session_model == "als"
