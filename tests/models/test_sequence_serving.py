"""A recommend slot with ``"model": "sequence"``: training learns and ships the
sequence vectors (only then), the edge ranks a session by what comes next after its
latest items, and a slot without it keeps the bundle's session model."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from edge_agent.decide import decide_page
from models.bundle_runtime import BundleModels
from models.content import BundleError, build_content, load_content
from models.synthetic import chain_walks
from tests.models.slot_training import train_with_slot_model

REPO = Path(__file__).resolve().parents[2]


def train(tmp_path: Path, sequence_slot: bool) -> tuple[BundleModels, dict[str, object], list[list[str]]]:
    """Chains of 30 items walked in order; the templates' catalog made of those items."""
    data = chain_walks(3000, chains=8, length=30, seed=2)
    titles = {i: f"Part {i}" for i in sorted(set(data.items.tolist()))}
    bundle = train_with_slot_model(tmp_path, data, titles, "parts", "sequence" if sequence_slot else "")
    # the walks, in order, to know what follows what
    walks: dict[str, list[str]] = {}
    for user, item in zip(data.users.tolist(), data.items.tolist(), strict=True):
        walks.setdefault(str(user), []).append(str(item))
    return BundleModels(bundle), bundle.json("content.json"), list(walks.values())


def successors(walks: list[list[str]]) -> dict[str, str]:
    """Each item's most frequent next item over the walks."""
    counts: dict[str, dict[str, int]] = {}
    for walk in walks:
        for a, b in itertools.pairwise(walk):
            following = counts.setdefault(a, {})
            following[b] = following.get(b, 0) + 1
    return {a: max(nxt, key=lambda b: nxt[b]) for a, nxt in counts.items()}


def test_a_sequence_slot_ships_the_vectors_and_ranks_what_comes_next(tmp_path: Path) -> None:
    models, content_doc, walks = train(tmp_path, sequence_slot=True)
    assert "sequence" in models.vector_models
    follows = successors(walks)
    hits = 0
    cases = [w for w in walks if len(w) >= 4][:200]
    for walk in cases:
        recent, truth = walk[:3], follows.get(walk[2])
        ranked = models.recommend_next(recent, [])
        assert not set(recent) & set(ranked)
        hits += truth in ranked[:4]
    assert hits >= 0.6 * len(cases)  # the next part, in the 4 cards a slot shows, most of the time
    assert models.recommend_next(["no-such-item"], []) == []
    # through the edge's decision: detail "sequence", the successor's card first in line
    bundle = load_content(content_doc)
    walk = cases[0]
    session = {"recent": [[i, 1.0] for i in walk[:3]]}
    decision = decide_page(bundle, {}, [("recs", {})], 1000.0, models, "v1", session=session)
    outcome = decision.outcomes["recs"]
    assert outcome.reason == "recommend" and outcome.detail == "sequence" and outcome.html
    expected = models.recommend_next(walk[:3], [""])
    assert outcome.html.index(f"/p/{expected[0]}") < outcome.html.index(f"/p/{expected[1]}")
    assert not any(f'/p/{seen}"' in outcome.html for seen in walk[:3])  # what comes next, not what was seen


def test_without_a_sequence_slot_nothing_is_learned_and_sessions_rank_as_before(tmp_path: Path) -> None:
    models, content_doc, walks = train(tmp_path, sequence_slot=False)
    assert "sequence" not in models.vector_models and models.recommend_next(walks[0][:3], []) == []
    session = {"recent": [[i, 1.0] for i in walks[0][:3]]}
    decision = decide_page(load_content(content_doc), {}, [("recs", {})], 1000.0, models, "v1", session=session)
    assert decision.outcomes["recs"].detail == models.session_model


def test_a_slot_naming_an_unknown_model_is_refused_with_where() -> None:
    raw = build_content(REPO / "templates")
    raw["slots"]["recs"]["model"] = "telepathy"
    with pytest.raises(BundleError, match=r"slots\.recs\.model"):
        load_content(raw)
    raw["slots"]["recs"]["model"] = "sequence"
    assert load_content(raw).slots["recs"].model == "sequence"
