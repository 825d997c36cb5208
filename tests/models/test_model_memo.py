"""Remembered model answers (the edge's ``P13N_EDGE_MODEL_MEMO_ENTRIES``): the same
answers as computing them, counted, bounded, and dropped on demand."""

from __future__ import annotations

import numpy as np

from edge_agent.model_runtime import load_models
from tests.conftest import TrainedBundle


def test_remembered_answers_equal_computed_ones(trained_bundle: TrainedBundle) -> None:
    plain = load_models(str(trained_bundle.path), str(trained_bundle.public_key), 0)
    memo = load_models(str(trained_bundle.path), str(trained_bundle.public_key), 64)
    assert plain.memo_stats() == {}
    rng = np.random.default_rng(3)
    ids = plain.item_ids
    sessions = [
        [(ids[int(i)], float(w)) for i, w in zip(rng.integers(0, len(ids), 4), rng.integers(1, 4, 4), strict=True)]
        for _ in range(40)
    ]
    factors = [rng.normal(size=plain.item_factors.shape[1]).astype(np.float32).tolist() for _ in range(10)]
    for _ in range(2):  # the second round is answered from memory
        for s in sessions:
            exclude = [s[0][0]]
            assert memo.recommend(s, exclude) == plain.recommend(s, exclude)
            assert memo.recommend_next([i for i, _ in s], exclude) == plain.recommend_next([i for i, _ in s], exclude)
            attrs = {"views": len(s), "device": "mobile", "recent_items": [i for i, _ in s]}
            assert memo.segment(attrs) == plain.segment(attrs)
        for f in factors:
            assert memo.recommend_for(f, []) == plain.recommend_for(f, [])
    stats = memo.memo_stats()
    assert stats["recommend"] == (40, 40) and stats["recommend_for"] == (10, 10)
    # a caller changing its list does not change what is remembered
    first = memo.recommend(sessions[0], [])
    first.clear()
    assert memo.recommend(sessions[0], []) == plain.recommend(sessions[0], [])
    # another weight is another question
    heavier = [(i, w + 1.0) for i, w in sessions[1]]
    before = memo.memo_stats()["recommend"][1]
    memo.recommend(heavier, [])
    assert memo.memo_stats()["recommend"][1] == before + 1


def test_memory_is_bounded_and_forget_empties_it(trained_bundle: TrainedBundle) -> None:
    memo = load_models(str(trained_bundle.path), str(trained_bundle.public_key), 8)
    ids = memo.item_ids
    for i in range(20):
        memo.recommend([(ids[i], 1.0)], [])
    memo.recommend([(ids[0], 1.0)], [])  # pushed out by the twelve after it: computed again
    assert memo.memo_stats()["recommend"] == (0, 21)
    memo.recommend([(ids[19], 1.0)], [])
    assert memo.memo_stats()["recommend"] == (1, 21)
    memo.forget()
    memo.recommend([(ids[19], 1.0)], [])
    assert memo.memo_stats()["recommend"] == (1, 22)
