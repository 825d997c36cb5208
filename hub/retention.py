"""Retention: delete what is older than each data class allows.

* lake — whole day files older than ``lake_days`` are removed;
* warehouse — events received more than ``warehouse_days`` ago, users not seen since,
  identity links first seen before; marts' user features without activity since;
* dead letters — older than ``dead_letter_days``;
* consent records — older than ``consent_days``.

:func:`run` takes ``now`` so tests (and a back-fill) drive it with their own clock; the
hub calls it every ``P13N_HUB_RETENTION_INTERVAL_S`` with the wall clock. Deletes go in
rowid slices so ingestion (same writer lock) waits at most one slice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.ingest.storage import HubStorage

_DAY_FILE = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.sqlite$")
SLICE_ROWS = 50_000


@dataclass(frozen=True)
class RetentionPolicy:
    lake_days: int = 30
    warehouse_days: int = 395
    dead_letter_days: int = 30
    consent_days: int = 1095


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sliced_delete(storage: HubStorage, table: str, where: str, cutoff: str) -> int:
    db = storage.warehouse
    top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    deleted = 0
    for low in range(0, int(top), SLICE_ROWS):
        with storage.lock:
            deleted += db.execute(
                f"DELETE FROM {table} WHERE rowid > ? AND rowid <= ? AND {where} < ?", (low, low + SLICE_ROWS, cutoff)
            ).rowcount
    return deleted


def run(storage: HubStorage, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """Apply the policy as of ``now`` (timezone-aware); returns what was deleted."""
    out: dict[str, int] = {}
    lake_cutoff = (now - timedelta(days=policy.lake_days)).date().isoformat()
    files = 0
    for path in sorted(storage.lake_dir.glob("events-*.sqlite")):
        m = _DAY_FILE.match(path.name)
        if m and m.group(1) < lake_cutoff:
            storage.drop_lake_day(m.group(1))
            files += 1
    out["lake.files"] = files
    wh_cutoff = _iso(now - timedelta(days=policy.warehouse_days))
    out["warehouse.events"] = _sliced_delete(storage, "events", "received_at", wh_cutoff)
    if out["warehouse.events"]:
        storage.events_deleted()
    out["warehouse.dead_letters"] = _sliced_delete(
        storage, "dead_letters", "received_at", _iso(now - timedelta(days=policy.dead_letter_days))
    )
    out["warehouse.consent_log"] = _sliced_delete(
        storage, "consent_log", "received_at", _iso(now - timedelta(days=policy.consent_days))
    )
    with storage.lock:
        db = storage.warehouse
        out["warehouse.users"] = db.execute("DELETE FROM users WHERE last_seen < ?", (wh_cutoff,)).rowcount
        out["warehouse.identities"] = db.execute("DELETE FROM identities WHERE first_seen < ?", (wh_cutoff,)).rowcount
        out["marts.user_features"] = storage.marts.execute("DELETE FROM user_features WHERE last_ts < ?", (wh_cutoff,)).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        storage.marts.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return out
