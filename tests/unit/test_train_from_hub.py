"""Training data from the hub's warehouse (hub/training/from_hub.py over the real SQLite
store): event weights, time decay, the window, and who may be trained on — consent to
personalization, a withdrawal anywhere wins, erased subjects never."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.storage import HubStore, SubjectIds
from hub.training.from_hub import HubDataRules, NotEnoughData, load
from models.als import ALSParams
from models.erasure import Tokenizer, erasure_token
from models.recommenders import ALS, Catalog
from tests.conftest import StoreFactory, sqlite_store

#: The tests' clock: the time of this run (the gate compares event times with when the
#: live bundle was made), to the second.
NOW = datetime.now(UTC).replace(microsecond=0)
KEY = b"test-pseudonym-key"
RULES = HubDataRules(window_days=90, half_life_days=30, min_interactions=1, min_subjects=1, min_items=1)
RULES_ALS = ALSParams(factors=2, iterations=15)  # two taste groups


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ev(kind: str, visitor: str, days_ago: float = 0.0, **extra: Any) -> tuple[dict[str, Any], str]:
    when = at(days_ago)
    return {"event_id": uuid.uuid4().hex, "type": kind, "anonymous_id": visitor, "ts": when, **extra}, when


def store_with(tmp_path: Path, *events: tuple[dict[str, Any], str], new: StoreFactory = sqlite_store) -> HubStore:
    store = new(tmp_path)
    store.tokenizer = Tokenizer(KEY)
    by_day: dict[str, list[dict[str, Any]]] = {}
    for event, received in events:  # one batch per day of receipt (the event times stay theirs)
        by_day.setdefault(received[:10], []).append({**event, "received_at": received})
    for day in sorted(by_day):
        store.ingest(by_day[day], "test", by_day[day][-1]["received_at"])
    store.refresh_marts()
    return store


def grant(visitor: str, days_ago: float = 10.0, **extra: Any) -> tuple[dict[str, Any], str]:
    return ev("consent", visitor, days_ago, categories=["necessary", "personalization"], source="banner", **extra)


def weights_of(store: HubStore, rules: HubDataRules = RULES) -> dict[tuple[str, str], float]:
    data = load(store, rules, NOW).interactions
    return {(u, i): round(float(w), 4) for u, i, w in zip(data.users, data.items, data.weights, strict=True)}


def test_weights_per_event_type_decay_with_age_and_sum_per_subject_and_item(tmp_path: Path, new_store: StoreFactory) -> None:
    v = "visitorTrainA0000000001"
    store = store_with(
        tmp_path,
        grant(v),
        ev("click", v, 0, item_id="shoe"),  # 2, today
        ev("add_to_cart", v, 30, item_id="shoe"),  # 4, one half-life ago: 2
        ev("purchase", v, 60, order_id="o-1", total={"amount": 10, "currency": "EUR"}, items=[{"item_id": "hat"}]),  # 8 → 2
        ev("page_view", v, 0, url="https://shop.example/p/sock?ref=x"),  # 1: the product the page shows
        ev("page_view", v, 0, url="https://shop.example/about"),  # no item
        ev("click", v, 120, item_id="old"),  # outside the 90-day window,
        new=new_store,
    )
    assert weights_of(store) == {(v, "shoe"): 4.0, (v, "hat"): 2.0, (v, "sock"): 1.0}
    custom = HubDataRules(
        window_days=200, half_life_days=1e9, event_weights={"click": 1.0}, min_interactions=1, min_subjects=1, min_items=1
    )
    assert weights_of(store, custom) == {(v, "shoe"): 1.0, (v, "old"): 1.0}  # other types weigh nothing
    store.close()


def test_only_subjects_whose_consent_allows_personalization_are_trained_on(tmp_path: Path, new_store: StoreFactory) -> None:
    yes, none, withdrawn, later_user = (f"visitorTrain{n}00000000000"[:23] for n in "BCDE")
    store = store_with(
        tmp_path,
        grant(yes),
        ev("consent", none, 10, categories=["necessary", "analytics"], source="banner"),  # no personalization
        grant(withdrawn, 20),
        ev("consent", withdrawn, 5, categories=["necessary"], source="banner"),  # withdrawn since
        grant(later_user),  # consented while anonymous, then logged in
        ev("identify", later_user, 9, user_id="p1_" + "e" * 40),
        *(ev("click", v, 1, item_id=f"item-{v[-13:]}") for v in (yes, none, withdrawn, later_user)),
        ev("click", "visitorNoConsentAtAll01", 1, item_id="item-x"),
        ev("click", later_user, 1, item_id="item-after-login", user_id="p1_" + "e" * 40),
        new=new_store,
    )
    data = load(store, RULES, NOW)
    subjects = set(data.interactions.users.tolist())
    assert subjects == {yes, "p1_" + "e" * 40}  # the visitor's events and the user's, under the user
    assert data.summary["left_out"] == {"no_choice": 1, "declined": 2, "erased": 0}
    assert {i for u, i in zip(data.interactions.users, data.interactions.items, strict=True) if u.startswith("p1_")} == {
        f"item-{later_user[-13:]}",
        "item-after-login",
    }
    store.close()


def test_an_erased_subject_never_reaches_training_and_its_item_loses_its_neighbours(
    tmp_path: Path, new_store: StoreFactory
) -> None:
    """An item only the erased subject touched is learned from that subject alone:
    after the erasure it is no longer in the interactions, and its ALS factor is no
    longer close to the items the subject liked."""
    keep = [f"visitorKeep{n:012d}" for n in range(30)]
    gone = "visitorGone000000000001"
    events = [grant(v) for v in [*keep, gone]]
    for n, v in enumerate(keep):  # two taste groups over items a* and b*
        group = "a" if n % 2 else "b"
        events += [ev("click", v, 1 + k, item_id=f"{group}{(n + k) % 6}") for k in range(4)]
    events += [ev("click", gone, 1, item_id=f"a{k}") for k in range(6)]
    events.append(ev("click", gone, 1, item_id="only-gone"))
    store = store_with(tmp_path, *events, new=new_store)

    def taste_of_only_gone(data_store: HubStore) -> tuple[set[str], float | None]:
        """(items trained on, mean cosine of 'only-gone' to the a-items minus to the b-items)."""
        data = load(data_store, RULES, NOW)
        items = set(data.interactions.items.tolist())
        if "only-gone" not in items:
            return items, None
        catalog = Catalog.build(data.interactions, sorted(data.items))
        factors = ALS(catalog, data.interactions, RULES_ALS, seed=1).factors.item_factors
        unit = factors / (np.linalg.norm(factors, axis=1, keepdims=True) + 1e-9)
        pos = catalog.items.pos
        sims = unit @ unit[pos["only-gone"]]
        a = np.mean([sims[pos[f"a{k}"]] for k in range(6)])
        b = np.mean([sims[pos[f"b{k}"]] for k in range(6)])
        return items, float(a - b)

    items_before, leaning = taste_of_only_gone(store)
    assert "only-gone" in items_before and leaning is not None
    assert leaning > 0.5, leaning  # learned from the subject's taste: close to the a-items

    subject = store.resolve_subject(gone, KEY)
    store.suppress([erasure_token(i, KEY) for i in subject.all], at(0))
    store.erase_subject(SubjectIds(gone, subject.pseudonym, subject.anonymous_ids))
    store.ingest([ev("click", gone, 0, item_id="only-gone")[0]], "test", at(0))  # late event: dropped
    items_after, leaning_after = taste_of_only_gone(store)
    assert "only-gone" not in items_after and leaning_after is None  # nothing left to learn it from
    assert gone not in set(load(store, RULES, NOW).interactions.users.tolist())
    store.close()


def test_too_little_data_says_which_minimum_was_missed(tmp_path: Path, new_store: StoreFactory) -> None:
    v = "visitorTrainF0000000001"
    store = store_with(tmp_path, grant(v), ev("click", v, 1, item_id="one"), new=new_store)
    with pytest.raises(NotEnoughData) as caught:
        load(store, HubDataRules(min_interactions=1, min_subjects=5, min_items=1), NOW)
    assert caught.value.reason == "1 subjects in the window, fewer than 5"
    empty = new_store(tmp_path / "empty")
    with pytest.raises(NotEnoughData, match="0 interactions"):
        load(empty, HubDataRules(), NOW)
    store.close()
    empty.close()
