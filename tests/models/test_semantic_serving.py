"""A recommend slot with ``"model": "semantic"``: training embeds the catalog's text
with the sentence encoder and ships the vectors (only then); the edge ranks a session
by what reads alike through the same top-k graph as every item embedding; without an
installed encoder the bundle ships without them, says why, and the slot keeps the
session model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.decide import decide_page
from models.bundle_runtime import BundleModels
from models.content import load_content
from models.data import Item
from models.semantic import DIMS, item_vectors, reduce
from models.sentence_encoder import SentenceEncoder
from models.synthetic import THEMES, taste_groups, themed_items
from tests.models.slot_training import train_with_slot_model

GROUPS = 8
ITEMS = 160  # 20 items per theme


def train(tmp_path: Path, encoder: Path | None) -> tuple[BundleModels, dict[str, Any], dict[str, str]]:
    """Themed titles (models.synthetic.THEMES) on a taste-groups catalog; the recs slot
    asks for the semantic model. Returns the models, the manifest and the titles."""
    data = taste_groups(600, ITEMS, 6_000, groups=GROUPS, seed=4)
    titles = {i.id: i.title for i in themed_items(ITEMS, GROUPS, seed=4).values()}
    bundle = train_with_slot_model(tmp_path, data, titles, "all", "semantic", encoder)
    return BundleModels(bundle), bundle.manifest, titles


def theme_of(title: str) -> int:
    thing = title.split(" ", 1)[1]
    return next(g for g, things in enumerate(THEMES) if thing in things)


def test_a_semantic_slot_ships_text_vectors_and_ranks_what_reads_alike(tmp_path: Path, sentence_encoder: SentenceEncoder) -> None:
    models, manifest, titles = train(tmp_path, sentence_encoder.directory)
    assert "semantic" in models.vector_models and models.content_doc is not None
    meta = manifest["models"]["semantic"]
    assert meta["encoder"] == "all-MiniLM-L6-v2" and meta["items_with_vectors"] == ITEMS
    _, vectors = models.vector_models["semantic"]
    assert vectors.shape == (ITEMS, DIMS) and meta["dims"] == DIMS
    # the shipped vectors are the encoder's (reduced), in the bundle's item order
    described = {i: Item(i, t) for i, t in titles.items()}
    np.testing.assert_allclose(vectors, item_vectors(sentence_encoder, models.item_ids, described), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same_theme = total = 0
    for theme in range(GROUPS):
        session = [i for i, t in titles.items() if theme_of(t) == theme][:2]
        ranked = models.recommend_next(session, [], "semantic")[:4]
        assert len(ranked) == 4 and not set(session) & set(ranked)
        same_theme += sum(theme_of(titles[i]) == theme for i in ranked)
        total += len(ranked)
    assert same_theme >= 0.85 * total  # boots lead to sandals and sneakers, not to tea
    # through the edge's decision: detail "semantic"
    session_items = [i for i, t in titles.items() if theme_of(t) == 0][:2]
    decision = decide_page(
        load_content(models.content_doc),
        {},
        [("recs", {})],
        1000.0,
        models,
        "v1",
        session={"recent": [[i, 1.0] for i in session_items]},
    )
    outcome = decision.outcomes["recs"]
    assert outcome.reason == "recommend" and outcome.detail == "semantic" and outcome.html
    expected = models.recommend_next(session_items, [""], "semantic")
    assert outcome.html.index(f"/p/{expected[0]}") < outcome.html.index(f"/p/{expected[1]}")


def test_without_an_encoder_the_bundle_says_why_and_the_slot_keeps_the_session_model(tmp_path: Path) -> None:
    models, manifest, titles = train(tmp_path, tmp_path / "no-encoder")
    assert "semantic" not in models.vector_models and "sem_topk.onnx" not in manifest["files"]
    assert "p13n encoder install" in manifest["models"]["semantic"]["skipped"]
    assert models.content_doc is not None
    session = {"recent": [[i, 1.0] for i in list(titles)[:2]]}
    decision = decide_page(load_content(models.content_doc), {}, [("recs", {})], 1000.0, models, "v1", session=session)
    outcome = decision.outcomes["recs"]
    assert outcome.reason == "recommend" and outcome.detail == models.session_model


def test_reduction_keeps_the_axes_texts_differ_on_and_leaves_undescribed_items_out() -> None:
    # four texts differing along one direction, plus noise far smaller along another
    encoded = np.array([[1.0, 5.0, 0.01], [1.0, -5.0, -0.01], [1.0, 4.0, 0.0], [1.0, -4.0, 0.0]])
    out = reduce(encoded, [0, 2, 3, 5], 6, dims=1)
    assert out.shape == (6, 1) and out.dtype == np.float32
    # centring removes what every text shares (the first column); signs follow the main axis
    np.testing.assert_allclose(np.abs(out[[0, 2, 3, 5], 0]), 1.0)
    assert out[0, 0] == -out[2, 0] and out[3, 0] == out[0, 0] and out[5, 0] == out[2, 0]
    assert not out[[1, 4]].any()  # rows no text describes stay zero: never ranked
