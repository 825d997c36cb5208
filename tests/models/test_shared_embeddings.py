"""A top-k session and the item embeddings read beside it (fold-in, session vectors)
are one array, not two copies: what the session scores with is what the edge holds."""

from __future__ import annotations

import numpy as np
import pytest

from models.onnx_graphs import EXACT_BELOW, topk_graph
from models.onnx_runtime import TopKModel, topk_embeddings
from models.process import release_free_memory


@pytest.mark.parametrize("items", [300, EXACT_BELOW + 500], ids=["exact", "two-stage"])
def test_the_session_reads_the_array_it_returns(items: int) -> None:
    rng = np.random.default_rng(items)
    y = rng.normal(size=(items, 16)).astype(np.float32)
    data = topk_graph(y, 10)
    plain = TopKModel(data)
    shared, vectors = TopKModel.with_embeddings(data)
    assert vectors.shape == (items, 16) and np.array_equal(vectors, topk_embeddings(data))
    assert not vectors.flags.writeable  # nothing at the edge can change a model by accident
    ((held, _),) = shared._shared
    assert np.shares_memory(held, vectors)  # the session's initializer is the very array
    user = rng.normal(size=16).astype(np.float32)
    exclude = np.array([3, 7], dtype=np.int64)
    top_plain, scores_plain = plain.top(user, exclude)
    top_shared, scores_shared = shared.top(user, exclude)
    assert np.array_equal(top_plain, top_shared) and np.allclose(scores_plain, scores_shared)
    release_free_memory()  # safe at any time: the shared arrays stay
    assert np.array_equal(shared.top(user, exclude)[0], top_shared)


def test_a_shared_initializer_is_read_in_place() -> None:
    """The two-stage graph (every catalog from EXACT_BELOW items: the ones whose memory
    matters) gathers its float stage from the array as given. A smaller, exact-stage
    graph feeds a constant MatMul, which onnxruntime pre-packs into a copy of its own."""
    rng = np.random.default_rng(1)
    mine = rng.normal(size=(EXACT_BELOW + 500, 16)).astype(np.float32)
    model = TopKModel(topk_graph(mine, 10), shared={"item_embeddings": mine})
    user = rng.normal(size=16).astype(np.float32)
    top, scores = model.top(user)
    mine[int(top[0])] *= 2  # change the array after the session was made: its exact scores follow
    _, doubled = model.top(user)
    assert doubled[0] == pytest.approx(2 * scores[0], rel=1e-5)
