"""A bandit's evidence kept from the events since its last update
(hub/storage/sqlite_bandits.py) equals what the experiment's full results count, however
the events arrive; erasure, retention and the export reach it."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from hub import retention
from hub.experiments.metrics import Metric
from hub.pii import PiiCipher
from hub.storage.sqlite import SqliteStore
from hub.storage.sqlite_bandits import bandit_evidence
from tests.unit.test_train_from_hub import KEY, ev, store_with

BUY = {"items": [{"item_id": "i1", "quantity": 1}], "total": {"amount": 2.0, "currency": "EUR"}}
METRIC = Metric("buyers", "conversion", "purchase", 48.0)


def full_count(store: SqliteStore, experiment: str, metric: Metric = METRIC) -> dict[str, tuple[int, int]]:
    """What the results say: units per variant and converted units."""
    data = store.experiment(experiment, [metric])
    return {v: (n, int(data.metrics[metric.name][v].total)) for v, n in data.users.items()}


def test_the_kept_evidence_equals_the_full_count_whatever_the_arrival_order(tmp_path: Path) -> None:
    """300 visitors (some linked to users before their exposures, some seeing two
    variants, some buying before, inside and after the window), their events ingested in
    shuffled batches with an update after each: purchases often land before the exposure
    they follow, and slices of 7 rows cut every batch."""
    rng = random.Random(11)
    events = []
    for n in range(300):
        v = f"visitorBanditEv{n:08d}"
        arm = rng.choice(("a", "b", "c"))
        if n % 10 == 0:
            events.append(ev("identify", v, 3.0, user_id=f"user-bandit-{n // 20}"))  # two devices per user
        events.append(ev("exposure", v, 2.0, experiment="bx", variant=arm, slot="hero"))
        if n % 37 == 0:
            events.append(ev("exposure", v, 1.5, experiment="bx", variant="a" if arm != "a" else "b"))  # mixed
        if rng.random() < 0.4:
            events.append(ev("purchase", v, rng.choice((2.5, 1.9, 1.2, -0.5)), order_id=f"o{n}", **BUY))
        if n % 50 == 0:
            events.append(ev("exposure", v, 2.0, experiment="other", variant="a"))
    rng.shuffle(events)
    store = store_with(tmp_path)
    try:
        for start in range(0, len(events), 60):
            batch = [{**e, "received_at": r} for e, r in events[start : start + 60]]
            store.ingest(batch, "test", batch[-1]["received_at"])
            bandit_evidence(store, "bx", METRIC, slice_rows=7)
        store.refresh_marts()
        kept = bandit_evidence(store, "bx", METRIC)
        expected = full_count(store, "bx")
        assert kept == expected
        assert sum(n for n, _ in kept.values()) > 250 and 0 < sum(c for _, c in kept.values()) < 150
        # nothing new: the same answer, and the mark stays at the newest event
        assert bandit_evidence(store, "bx", METRIC) == expected
        top = store.warehouse.execute("SELECT max(rowid) FROM events").fetchone()[0]
        assert store.marts.execute("SELECT rowid FROM bandit_marks WHERE experiment = 'bx'").fetchone() == (top,)
        # a changed metric (a shorter window) starts over and matches its own full count
        short = Metric("buyers", "conversion", "purchase", 12.0)
        assert bandit_evidence(store, "bx", short) == full_count(store, "bx", short) != expected
    finally:
        store.close()


def test_every_way_a_conversion_reaches_its_unit(tmp_path: Path) -> None:
    """The stitching cases of the results (a visitor alone, a linked device, the user id
    on the event, an exposure that named the user), with the links known first."""
    store = store_with(
        tmp_path,
        ev("identify", "visitorStitchPhone0001", 3.0, user_id="user-stitch"),
        ev("identify", "visitorStitchLaptop001", 3.0, user_id="user-stitch"),
        ev("exposure", "visitorStitchAnon00001", 2.0, experiment="st", variant="a"),
        ev("purchase", "visitorStitchAnon00001", 1.9, order_id="o1", **BUY),
        ev("exposure", "visitorStitchPhone0001", 2.0, experiment="st", variant="b"),
        ev("purchase", "visitorStitchLaptop001", 1.9, order_id="o2", **BUY),
        ev("exposure", "visitorStitchNamed0001", 2.0, experiment="st", variant="b", user_id="user-named"),
        ev("purchase", "visitorStitchNamed0002", 1.9, user_id="user-named", order_id="o4", **BUY),
        ev("exposure", "visitorStitchLate00001", 2.0, experiment="st", variant="a"),
        ev("purchase", "visitorStitchLate00001", 0.0, order_id="o5", **BUY),  # after the 48 h window
        ev("purchase", "visitorStitchNever0001", 1.9, order_id="o6", **BUY),
    )
    try:
        assert bandit_evidence(store, "st", METRIC) == full_count(store, "st") == {"a": (2, 1), "b": (2, 2)}
    finally:
        store.close()


def test_erasure_retention_and_export_reach_the_bandit_units(tmp_path: Path) -> None:
    gone, kept = "visitorBanditGone00001", "visitorBanditKept00001"
    store = store_with(
        tmp_path,
        ev("exposure", kept, 2.0, experiment="bx", variant="a"),
        ev("exposure", gone, 2.0, experiment="bx", variant="b"),
        ev("purchase", gone, 1.0, order_id="o1", **BUY),
    )
    try:
        assert bandit_evidence(store, "bx", METRIC) == {"a": (1, 0), "b": (1, 1)}
        subject = store.resolve_subject(gone, KEY)
        exported = store.export_subject(subject, PiiCipher.from_settings("", "", tmp_path))
        assert [(b["experiment"], b["variant"], b["converted"]) for b in exported["bandits"]] == [("bx", "b", True)]
        counts = store.erase_subject(subject)
        assert counts["marts.bandit_units"] == 1
        assert bandit_evidence(store, "bx", METRIC) == {"a": (1, 0)}
        assert gone.encode() not in (tmp_path / "marts.sqlite").read_bytes()
        # the erased visitor's events were the newest: the mark went down with them, so a
        # new exposure that reuses their rowids is still counted
        late = ev("exposure", "visitorBanditLate00001", 0.5, experiment="bx", variant="b")
        store.ingest([{**late[0], "received_at": late[1]}], "test", late[1])
        assert bandit_evidence(store, "bx", METRIC) == {"a": (1, 0), "b": (1, 0)}
        # retention: units first exposed before the warehouse cut go with their events
        deleted = retention.run(store, retention.RetentionPolicy(30, 1, 30, 365), datetime.now(UTC))
        assert deleted["marts.bandit_units"] == 1
        assert bandit_evidence(store, "bx", METRIC) == {"b": (1, 0)}
    finally:
        store.close()


def test_a_new_bandit_starts_past_the_folded_events_and_still_sees_an_earlier_purchase(tmp_path: Path) -> None:
    """A bandit added to a warehouse that never exposed its experiment skips the events
    the marts already folded; a purchase stored before an exposure it follows (an edge
    that flushed its exposures late) still converts the unit."""
    v = "visitorBanditFresh0001"
    store = store_with(
        tmp_path,
        *(ev("page_view", f"visitorBanditOld{n:06d}", 3.0, url="https://s.example/") for n in range(50)),
        ev("purchase", v, 1.0, order_id="o1", **BUY),
    )
    try:
        folded = store.marts.execute("SELECT rowid FROM watermarks WHERE name = 'events'").fetchone()[0]
        assert folded == 51 and bandit_evidence(store, "fresh", METRIC) == {}
        assert store.marts.execute("SELECT rowid FROM bandit_marks WHERE experiment = 'fresh'").fetchone() == (51,)
        late = ev("exposure", v, 1.5, experiment="fresh", variant="b")
        store.ingest([{**late[0], "received_at": late[1]}], "test", late[1])
        assert bandit_evidence(store, "fresh", METRIC) == {"b": (1, 1)}
    finally:
        store.close()
