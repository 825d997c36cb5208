"""Retention per data class, driven by a controllable clock (``now``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.store import EdgeStore
from hub import retention
from hub.storage.sqlite import SqliteStore

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(kind: str, visitor: str, received: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": kind, "anonymous_id": visitor, "ts": received, "received_at": received, **extra}


def fill(storage: SqliteStore) -> None:
    """Events received 400, 100, 40 and 1 days before NOW, with consents and dead letters."""
    for days in (400, 100, 40, 1):
        received = at(days)
        batch = [
            event("page_view", f"visitor-{days:04d}-0000000", received, url="https://s.example/p/1"),
            event("consent", f"visitor-{days:04d}-0000000", received, categories=["necessary", "analytics"], source="banner"),
            {"type": "page_view"},  # invalid: a dead letter
        ]
        storage.ingest(batch, "test", received)
    storage.refresh_marts()


def rows(storage: SqliteStore, sql: str) -> int:
    return int(storage.warehouse.execute(sql).fetchone()[0])


def test_each_data_class_keeps_only_its_window(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path)
    try:
        fill(storage)
        # dead letters take the ingest time; make them as old as their batch for the test
        storage.warehouse.execute("UPDATE dead_letters SET received_at = (SELECT min(received_at) FROM events)")
        assert len(list(storage.lake_dir.glob("events-*.sqlite"))) == 4
        policy = retention.RetentionPolicy(lake_days=30, warehouse_days=90, dead_letter_days=30, consent_days=365)
        deleted = retention.run(storage, policy, NOW)
        assert deleted["lake.files"] == 3  # 400, 100 and 40 days old
        assert sorted(p.name for p in storage.lake_dir.glob("events-*.sqlite")) == [f"events-{at(1)[:10]}.sqlite"]
        assert deleted["warehouse.events"] == 4  # page view + consent, 400 and 100 days old
        assert rows(storage, "SELECT count(*) FROM events") == 4
        assert storage.warehouse.execute("SELECT min(received_at) FROM events").fetchone()[0] == at(40)
        assert deleted["warehouse.consent_log"] == 1  # only the 400-day-old proof is past 365 days
        assert rows(storage, "SELECT count(*) FROM consent_log") == 3
        assert deleted["warehouse.dead_letters"] == 4 and rows(storage, "SELECT count(*) FROM dead_letters") == 0
        assert deleted["marts.user_features"] == 2
        # a second run on the same day deletes nothing more
        again = retention.run(storage, policy, NOW)
        assert set(again.values()) == {0}
        # a year later everything has aged out
        later = retention.run(storage, policy, NOW + timedelta(days=400))
        assert later["lake.files"] == 1 and rows(storage, "SELECT count(*) FROM events") == 0
        # events after an empty warehouse start again at rowid 1: the marts still fold them
        fresh = at(-400)
        storage.ingest([event("page_view", "visitor-fresh-000000001", fresh, url="https://s.example/p/1")], "test", fresh)
        assert storage.refresh_marts() == 1
        assert storage.marts.execute("SELECT views FROM user_features WHERE subject = 'visitor-fresh-000000001'").fetchone() == (
            1,
        )
    finally:
        storage.close()


def test_retention_command_takes_the_clock_and_settings(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path / "hub")
    fill(storage)
    storage.close()
    env = {
        **os.environ,
        "P13N_HUB_RETENTION_LAKE_DAYS": "50",
        "P13N_HUB_RETENTION_WAREHOUSE_DAYS": "50",
        "P13N_HUB_AUDIT_KEY": "the-hubs-audit-key",  # as the hub runs with
    }
    out = subprocess.run(
        [sys.executable, "-m", "p13n", "retention", "run", "--data-dir", str(tmp_path / "hub"), "--now", NOW.isoformat()],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["deleted"]["lake.files"] == 2 and report["deleted"]["warehouse.events"] == 4
    # a local run changes data: it is in the audit log like an API call
    from hub.audit import AuditLog

    log = AuditLog(tmp_path / "hub" / "audit.sqlite", b"read-only")
    entries = log.entries()
    log.close()
    assert [(e["action"], e["role"]) for e in entries] == [("retention.run", "local")]
    assert entries[0]["actor"].startswith("cli:") and entries[0]["detail"]["deleted"]["lake.files"] == 2
    bad = subprocess.run(
        [sys.executable, "-m", "p13n", "retention", "run", "--data-dir", str(tmp_path / "hub"), "--now", "yesterday"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "ISO time" in bad.stderr


def test_edge_sessions_expire_by_ttl_on_the_edge_clock(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    try:
        t = 1_800_000_000.0
        store.put_sessions([("visitorAAAAAAAAAAAAAAAA", "{}", t + 60), ("visitorBBBBBBBBBBBBBBBB", "{}", t + 3600)])
        assert store.get_session("visitorAAAAAAAAAAAAAAAA", t) == {}
        assert store.purge_expired_sessions(t + 61) == 1
        assert store.get_session("visitorAAAAAAAAAAAAAAAA", t) is None
        assert store.session_count() == 1 and store.purge_expired_sessions(t + 3601) == 1
        # in batches (the lock is let go between them): every expired row, no live one
        store.put_sessions([(f"visitor{i:017d}", "{}", t + (10 if i % 3 else 7200)) for i in range(2500)])
        assert store.purge_expired_sessions(t + 11, batch=400) == 1666
        assert store.session_count() == 834
        assert store.get_session(f"visitor{0:017d}", t + 11) == {} and store.get_session(f"visitor{1:017d}", t) is None
    finally:
        store.close()
