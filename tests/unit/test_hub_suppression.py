"""Suppression at the hub: after an erasure, the subject's late events and CRM records
are dropped and counted, never stored (and never dead-lettered, which would keep them)."""

from __future__ import annotations

import uuid
from pathlib import Path

from hub.storage.sqlite import SqliteStore
from models.erasure import Tokenizer, erasure_token
from models.pseudonym import pseudonym

KEY = b"suppression-key"
RECEIVED = "2026-11-26T10:00:00.000Z"


def view(**ids: str) -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "type": "page_view", "url": "https://s.example/", "received_at": RECEIVED, **ids}


def test_late_events_and_crm_records_of_an_erased_subject_are_dropped(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path)
    storage.tokenizer = Tokenizer(KEY)
    user = pseudonym("carol", KEY)
    try:
        storage.suppress([erasure_token("visitorCarol0000000001", KEY), erasure_token(user, KEY)], RECEIVED)
        report = storage.ingest(
            [view(anonymous_id="visitorCarol0000000001"), view(user_id=user), view(anonymous_id="visitorDave00000000001")],
            "nats",
            RECEIVED,
        )
        assert report.suppressed == 2 and report.accepted == 1
        assert [r["status"] for r in report.results] == ["rejected", "rejected", "accepted"]
        assert {r.get("reason") for r in report.results[:2]} == {"erased_subject"}
        assert storage.warehouse.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        assert dict(storage.warehouse.execute("SELECT name, value FROM counters"))["suppressed"] == 2
        stored = storage.upsert_crm_users([(user, RECEIVED, "{}", None), (pseudonym("erin", KEY), RECEIVED, "{}", None)])
        assert stored == 1
        assert [r[0] for r in storage.warehouse.execute("SELECT user_id FROM users")] == [pseudonym("erin", KEY)]
    finally:
        storage.close()
    # the suppression list survives a restart
    again = SqliteStore(tmp_path)
    try:
        assert erasure_token(user, KEY) in again.suppressed
    finally:
        again.close()


def test_a_subject_erased_while_its_batch_is_prepared_leaves_the_lake_too(tmp_path: Path) -> None:
    """Preparation workers write the lake before the writer commits: an erasure in
    between finds no warehouse row, so the commit must take the lake rows out itself."""
    import orjson

    from hub.ingest.prep import prepare_payloads

    storage = SqliteStore(tmp_path)
    storage.tokenizer = Tokenizer(KEY)
    carol, dave = "visitorCarol0000000001", "visitorDave00000000001"
    events = [view(anonymous_id=carol), view(anonymous_id=dave), view(anonymous_id=carol)]
    try:
        prepared, malformed = prepare_payloads([orjson.dumps(events)], RECEIVED, storage.lake_dir)
        assert malformed == [] and prepared.lake == {}
        lake = storage.lake(RECEIVED[:10])
        assert lake.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 3  # written by "the worker"
        storage.suppress([erasure_token(carol, KEY)], RECEIVED)  # the erasure lands now
        report = storage.commit(prepared)
        assert (report.accepted, report.suppressed) == (1, 2)
        assert [r[0] for r in lake.execute("SELECT event_id FROM raw_events")] == [events[1]["event_id"]]
        assert [r[0] for r in storage.warehouse.execute("SELECT anonymous_id FROM events")] == [dave]
        # nothing of Carol's is left in the lake file or its write-ahead log
        lake_files = b"".join(p.read_bytes() for p in storage.lake_dir.iterdir())
        assert carol.encode() not in lake_files and dave.encode() in lake_files
    finally:
        storage.close()


def test_marts_count_new_events_after_the_newest_events_were_erased(tmp_path: Path) -> None:
    """SQLite gives a new row max(rowid) + 1: once an erasure removed the newest events,
    the next events reuse rowids the marts watermark has passed. The erasure lowers the
    watermark to the newest remaining row, so those events are still folded in once."""
    from hub.storage import SubjectIds

    storage = SqliteStore(tmp_path)
    storage.tokenizer = Tokenizer(KEY)
    carol, dave, erin = "visitorCarol0000000001", "visitorDave00000000001", "visitorErin00000000001"
    try:
        storage.ingest([view(anonymous_id=dave), view(anonymous_id=carol), view(anonymous_id=carol)], "nats", RECEIVED)
        assert storage.refresh_marts() == 3
        storage.erase_subject(SubjectIds(given=carol, pseudonym="", anonymous_ids=frozenset({carol})))
        storage.ingest([view(anonymous_id=erin), view(anonymous_id=dave)], "nats", RECEIVED)
        assert storage.refresh_marts() == 2
        views = dict(storage.marts.execute("SELECT subject, views FROM user_features"))
        assert views == {dave: 2, erin: 1}
        assert storage.refresh_marts() == 0  # nothing folded twice
    finally:
        storage.close()
