"""Retention in the SQLite tiers: delete what is older than each cutoff.

Lake day files before the lake cutoff are removed whole; warehouse rows go in rowid
slices, so ingestion (same writer lock) waits at most one slice; ``TRUNCATE``
checkpoints leave no deleted row in the WAL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hub.storage.interface import RetentionCutoffs

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

_DAY_FILE = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.sqlite$")
SLICE_ROWS = 50_000


def _sliced_delete(storage: SqliteStore, table: str, where: str, cutoff: str) -> int:
    db = storage.warehouse
    top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    deleted = 0
    for low in range(0, int(top), SLICE_ROWS):
        with storage.lock:
            deleted += db.execute(
                f"DELETE FROM {table} WHERE rowid > ? AND rowid <= ? AND {where} < ?", (low, low + SLICE_ROWS, cutoff)
            ).rowcount
    return deleted


def delete_expired(storage: SqliteStore, cut: RetentionCutoffs) -> dict[str, int]:
    out: dict[str, int] = {}
    files = 0
    for path in sorted(storage.lake_dir.glob("events-*.sqlite")):
        m = _DAY_FILE.match(path.name)
        if m and m.group(1) < cut.lake_day:
            storage.drop_lake_day(m.group(1))
            files += 1
    out["lake.files"] = files
    out["warehouse.events"] = _sliced_delete(storage, "events", "received_at", cut.warehouse)
    if out["warehouse.events"]:
        storage.events_deleted()
    out["warehouse.dead_letters"] = _sliced_delete(storage, "dead_letters", "received_at", cut.dead_letters)
    out["warehouse.consent_log"] = _sliced_delete(storage, "consent_log", "received_at", cut.consent)
    with storage.lock:
        db = storage.warehouse
        out["warehouse.users"] = db.execute("DELETE FROM users WHERE last_seen < ?", (cut.warehouse,)).rowcount
        out["warehouse.identities"] = db.execute("DELETE FROM identities WHERE first_seen < ?", (cut.warehouse,)).rowcount
        out["marts.user_features"] = storage.marts.execute(
            "DELETE FROM user_features WHERE last_ts < ?", (cut.warehouse,)
        ).rowcount
        out["marts.exposures"] = storage.marts.execute("DELETE FROM exposures WHERE last_ts < ?", (cut.warehouse,)).rowcount
        out["marts.bandit_units"] = storage.marts.execute(
            "DELETE FROM bandit_units WHERE first_jd < julianday(?)", (cut.warehouse,)
        ).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        storage.marts.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return out
