"""Known-answer tests: planted tastes, exact fold-in, ONNX parity for top-k and text."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.sparse as sp

from models.als import ALSFactors, ALSParams, fold_in, top_k, train_als
from models.data import Item
from models.evaluation import score, split
from models.onnx_graphs import topk_graph
from models.onnx_runtime import OnnxModel, TopKModel
from models.recommenders import ALS, Catalog, Content, Popularity
from models.synthetic import taste_groups
from models.text_model import fit_text, to_onnx, user_vector
from models.tuning import recommend_all, truth_by_user, tune
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def planted():  # type: ignore[no-untyped-def]
    data = taste_groups(1500, 600, 45_000, groups=20, in_group=0.9, seed=3)
    return split(data, "random", 0.75, 42)


def test_als_beats_popularity_by_a_wide_margin_on_planted_tastes(planted) -> None:  # type: ignore[no-untyped-def]
    train, test = planted
    tuned = tune(train, {}, 10, 42, grid={"factors": (32,), "regularization": (0.05,), "alpha": (10.0, 40.0)}, iterations=(10,))
    catalog = Catalog.build(train)
    truth = truth_by_user(test, catalog)
    users = sorted(truth)
    pop = score(recommend_all(Popularity(catalog), users, 10), truth, 10, len(catalog.items))
    als = score(recommend_all(ALS(catalog, train, tuned.als), users, 10), truth, 10, len(catalog.items))
    assert als.ndcg > 3 * pop.ndcg and als.precision > 3 * pop.precision
    assert als.coverage > pop.coverage


def test_recommendations_never_include_training_items(planted) -> None:  # type: ignore[no-untyped-def]
    train, _ = planted
    catalog = Catalog.build(train)
    model = ALS(catalog, train, ALSParams(factors=16, iterations=5))
    for user in catalog.users.ids[:50]:
        seen = {catalog.items.ids[i] for i in catalog.seen(user)}
        assert not seen & set(model.recommend(user, 20))


def test_fold_in_matches_implicits_own_user_solve() -> None:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    m = sp.random(300, 200, density=0.05, format="csr", random_state=1, dtype=np.float32)
    m.data = rng.integers(1, 9, m.nnz).astype(np.float32)
    params = ALSParams(factors=16, regularization=0.1, alpha=5.0, iterations=5)
    with threadpool_limits(1, "blas"):
        reference = AlternatingLeastSquares(factors=16, regularization=0.1, alpha=5.0, iterations=5, random_state=1)
        reference.fit(m, show_progress=False)
    gram = ALSFactors(reference.user_factors, reference.item_factors, params).gram()
    for u in (0, 17, 123):
        row = m[u]
        ours = fold_in(reference.item_factors, gram, row.indices, row.data, params.alpha)
        theirs = reference.recalculate_user(u, row)
        assert np.allclose(ours, np.asarray(theirs).ravel(), atol=1e-4)


def test_train_als_uses_the_users_by_items_orientation() -> None:
    m = sp.random(40, 25, density=0.2, format="csr", random_state=2, dtype=np.float32)
    factors = train_als(m, ALSParams(factors=8, iterations=3), seed=1)
    assert factors.user_factors.shape == (40, 8) and factors.item_factors.shape == (25, 8)


@pytest.mark.parametrize("n_items", [500, 5000])  # one exact stage; int8 stage + exact re-score
def test_topk_onnx_graph_matches_numpy(n_items: int) -> None:
    rng = np.random.default_rng(2)
    items = rng.normal(size=(n_items, 32)).astype(np.float32)
    model = TopKModel(topk_graph(items, 10))
    for trial in range(50):
        user = rng.normal(size=32).astype(np.float32)
        exact = items @ user
        # exclude some of the true winners, so the answer must reach past them
        exclude = np.array(sorted({int(np.argmax(exact)), 3, 99, n_items - 1}))
        idx, scores = model.top(user, exclude)
        expected = top_k(exact, 10, exclude)
        assert list(idx) == list(expected), trial
        assert np.allclose(scores, exact[expected], atol=1e-4)
        assert not set(idx.tolist()) & set(exclude.tolist())


def test_topk_graph_with_more_exclusions_than_candidates_never_returns_an_excluded_item() -> None:
    """The int8 stage ranks before exclusions apply: as many exclusions as the candidate
    margin still leave k answers (exactly scored, best first); excluding the whole
    candidate set leaves fewer answers (their scores marked), never an excluded item."""
    from models.onnx_graphs import candidates
    from models.onnx_runtime import MASK_PENALTY

    rng = np.random.default_rng(4)
    items = rng.normal(size=(4000, 16)).astype(np.float32)
    user = rng.normal(size=16).astype(np.float32)
    model = TopKModel(topk_graph(items, 10))
    exact = items @ user
    order = np.argsort(-exact)
    few = order[: candidates(10, 4000) - 10]  # as many as the candidate margin absorbs
    idx, scores = model.top(user, few)
    assert len(idx) == 10 and not set(idx.tolist()) & set(few.tolist())
    assert np.allclose(scores, exact[idx], atol=1e-4) and list(scores) == sorted(scores, reverse=True)
    many = order[: 2 * candidates(10, 4000)]
    idx, scores = model.top(user, many)
    kept = [i for i, s in zip(idx.tolist(), scores.tolist(), strict=True) if s > -MASK_PENALTY / 2]
    assert not set(kept) & set(many.tolist())


def retail_titles() -> list[str]:
    path = FIXTURES / "data" / "online-retail-sample.csv"
    with path.open(encoding="latin-1") as f:
        seen: dict[str, str] = {}
        for row in csv.DictReader(f):
            seen.setdefault(row["StockCode"], row["Description"])
    return [t for t in seen.values() if t]


def test_text_model_onnx_matches_scikit_learn_on_real_titles() -> None:
    titles = retail_titles()
    assert len(titles) > 3000
    model = fit_text(titles, dims=64)
    onnx_model = OnnxModel(to_onnx(model))
    batch = titles[:300]
    out = onnx_model.run({"text": np.array(batch, dtype=object).reshape(-1, 1)})[0]
    assert np.abs(out - model.pipeline.transform(batch)).max() < 1e-4


def test_content_model_serves_cold_items_from_text() -> None:
    train = taste_groups(50, 10, 500, groups=2, seed=1)
    items = {f"i{j}": Item(f"i{j}", "red wool scarf" if j in (1, 10) else f"plain item {j}") for j in range(10)}
    items["i10"] = Item("i10", "red wool scarf winter")  # never interacted with: a cold item
    catalog = Catalog.build(train, list(items))
    content = Content(catalog, items, dims=8)
    assert "i10" in catalog.items.pos
    v = user_vector(content.model, np.array([catalog.items.pos["i1"]]), np.array([1.0]))
    sims = content.model.item_vectors @ v
    best_other = max((sims[catalog.items.pos[i]], i) for i in items if i not in ("i1",))
    assert best_other[1] == "i10"


def test_the_fixtures_are_the_shared_originals_with_their_attribution() -> None:
    """The copies in tests/fixtures are byte-identical to the shared originals (when a
    checkout has them beside it) and keep their licence and attribution."""
    shared = FIXTURES.parents[2] / "shared"
    for rel in ("conformance/targeting-cases.json", "data/online-retail-sample.csv"):
        if (shared / rel).exists():
            assert (FIXTURES / rel).read_bytes() == (shared / rel).read_bytes(), rel
    assert "MIT License" in (FIXTURES / "conformance" / "README.md").read_text()
    assert "CC BY 4.0" in (FIXTURES / "data" / "README.md").read_text()


def test_batched_recommendations_equal_one_by_one(planted) -> None:  # type: ignore[no-untyped-def]
    from models.recommenders import BlendWeights, Hybrid

    train, _ = planted
    items = {f"i{j}": Item(f"i{j}", f"item {j} group {j // 30}") for j in range(600)}
    catalog = Catalog.build(train, list(items))
    als = ALS(catalog, train, ALSParams(factors=16, iterations=5))
    content = Content(catalog, items, dims=16)
    users = [*catalog.users.ids[:40], "never-seen-user"]
    for model in (Popularity(catalog), als, content, Hybrid(catalog, als, content, BlendWeights(0.5, 0.25, 0.25))):
        batched = model.recommend_many(users, 10)
        for u in users:
            single = model.recommend(u, 10)
            assert batched[u][:5] == single[:5], (model.name, u)


def test_low_rank_fold_in_equals_the_exact_solve() -> None:
    from models.als import fold_in_low_rank

    rng = np.random.default_rng(5)
    y = rng.normal(size=(500, 64)).astype(np.float32)
    gram = y.astype(np.float64).T @ y + 0.05 * np.eye(64)
    gram_inv = np.linalg.inv(gram)
    for k in (1, 3, 20):
        items = rng.choice(500, size=k, replace=False)
        weights = rng.choice([1.0, 2.0, 4.0, 8.0], size=k) * (rng.random(k) > 0.3)  # some c = 0: "c − 1" negative
        weights[0] = 0.1  # c = alpha·w = 1 exactly: the D = 0 case
        exact = fold_in(y, gram, items, weights, 10.0)
        fast = fold_in_low_rank(y, gram_inv, items, weights, 10.0)
        assert np.allclose(exact, fast, atol=1e-4), k


def test_item_factors_are_read_back_from_the_topk_graph() -> None:
    from models.onnx_runtime import topk_embeddings

    for n in (300, 3000):  # both graph shapes
        y = np.random.default_rng(3).normal(size=(n, 16)).astype(np.float32)
        assert np.array_equal(topk_embeddings(topk_graph(y, 10)), y)
