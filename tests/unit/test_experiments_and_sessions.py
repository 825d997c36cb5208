"""Experiment bucketing matches its weights and is sticky; sessions fold events in."""

from __future__ import annotations

from collections import Counter

from scipy.stats import chisquare

from models.experiments import EXCLUDED, HOLDOUT, assign
from models.session import apply_event, new_session, session_attributes


def test_assignment_over_10000_ids_matches_the_weights() -> None:
    weights = [0.5, 0.3, 0.2]
    counts = Counter(assign("exp-1", f"visitor-{i}", weights, holdout=0.1) for i in range(10_000))
    assert abs(counts[HOLDOUT] - 1000) < 120  # ~10 % held out
    observed = [counts[i] for i in range(3)]
    n = sum(observed)
    assert chisquare(observed, [w * n for w in weights]).pvalue > 0.001


def test_assignment_is_deterministic_and_seed_dependent() -> None:
    first = [assign("exp-1", f"v{i}", [1, 1]) for i in range(200)]
    assert first == [assign("exp-1", f"v{i}", [1, 1]) for i in range(200)]
    assert first != [assign("exp-2", f"v{i}", [1, 1]) for i in range(200)]


def test_coverage_excludes_the_rest() -> None:
    counts = Counter(assign("exp-3", f"v{i}", [1], coverage=0.25) for i in range(4000))
    assert abs(counts[EXCLUDED] - 3000) < 150


def test_session_folds_events_into_features() -> None:
    session = new_session()
    cats = {"sh01": "shoes", "sh02": "shoes", "dr01": "dresses"}

    def item_of(url: str) -> str:
        return url.rsplit("/p/", 1)[1] if "/p/" in url else ""

    for url in ("https://s/p/sh01", "https://s/p/sh02", "https://s/p/dr01", "https://s/p/sh01"):
        apply_event(session, {"type": "page_view", "url": url, "context": {"utm_source": "mail"}}, cats, item_of, 100.0)
    apply_event(session, {"type": "purchase", "items": [{"item_id": "dr01"}]}, cats, item_of, 101.0)
    attrs = session_attributes(session)
    assert attrs["views"] == 4 and attrs["purchases"] == 1
    assert attrs["category_views"] == {"shoes": 3, "dresses": 1}
    assert attrs["favourite_category"] == "shoes" and attrs["favourite_views"] == 3
    assert attrs["bought_items"] == ["dr01"] and attrs["utm_source"] == "mail"
    assert session["recent"][-1] == ["dr01", 8.0]
