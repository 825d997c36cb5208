"""An erasure order applied to the edge's SQLite: sessions, profiles, outbox — and
nothing of the subject can be written back afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from edge_agent.store import EdgeStore
from models.erasure import Tokenizer, erasure_token

KEY = b"edge-erasure-key"
GONE = "visitorGone000000000001"
STAYS = "visitorStays00000000001"
USER = "p1_" + "a" * 40


def events(visitor: str, user: str | None = None) -> bytes:
    batch = [{"event_id": f"{visitor}-{i}", "type": "page_view", "anonymous_id": visitor} for i in range(3)]
    if user:
        batch.append(
            {"event_id": f"{visitor}-id", "type": "identify", "anonymous_id": "visitorOther000000000001", "user_id": user}
        )
    return orjson.dumps(batch)


def test_erase_deletes_sessions_profiles_and_queued_events_and_blocks_rewrites(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.tokenizer = Tokenizer(KEY)
    try:
        store.outbox_add(
            [
                ("a", "p13n.events.e", events(GONE), 3),
                ("b", "p13n.events.e", events(STAYS), 3),
                ("c", "p13n.events.e", events("visitorOther000000000001", USER), 4),  # linked through the user id
            ],
            1.0,
        )
        store.put_sessions([(GONE, "{}", 9e9), (STAYS, "{}", 9e9)])
        store.apply_profiles([(GONE, json.dumps({"views": 1}), 1), (USER, json.dumps({"views": 2}), 2), (STAYS, "{}", 3)])
        assert store.outbox_depth() == 10

        counts = store.erase("er_1", [erasure_token(GONE, KEY), erasure_token(USER, KEY)], 2.0)
        assert counts == {"sessions": 1, "profiles": 2, "outbox": 2}
        assert store.outbox_depth() == 3 and [b for _, b, _ in store.outbox_batch(100)] == [events(STAYS)]
        assert store.get_session(STAYS, 0) == {} and store.get_session(GONE, 0) is None
        # a flush or a profile update racing the erasure cannot bring the subject back
        store.put_sessions([(GONE, "{}", 9e9)])
        store.apply_profiles([(GONE, "{}", 4)])
        assert store.get_session(GONE, 0) is None and store.get_profile(GONE) is None
        assert store.profile_cursor() == 4  # the stream position still advances
        # idempotent, and the suppression survives a restart
        assert store.erase("er_1", [erasure_token(GONE, KEY)], 3.0) == {"sessions": 0, "profiles": 0, "outbox": 0}
    finally:
        store.close()
    reopened = EdgeStore(tmp_path / "edge.sqlite3")
    try:
        assert erasure_token(GONE, KEY) in reopened.suppressed
    finally:
        reopened.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert GONE.encode() not in raw and USER.encode() not in raw and STAYS.encode() in raw
