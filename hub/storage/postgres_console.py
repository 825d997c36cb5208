"""What the operator console reads from the PostgreSQL tiers (see ``sqlite_console``,
whose Python halves these share)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.storage.sqlite_console import (
    CONSENT_BY_DAY,
    consent_days,
    dead_letter_group,
    now_iso,
    replay_plan,
    replay_report,
    since_day,
)

if TYPE_CHECKING:
    from hub.storage.postgres import PostgresStore


def dead_letters(storage: PostgresStore, samples: int = 3) -> list[dict[str, Any]]:
    with storage.reading() as db:
        groups = db.execute(
            "SELECT reason, source, COUNT(*), MAX(received_at) FROM dead_letters GROUP BY reason, source "
            "ORDER BY 3 DESC, 1, 2 LIMIT 100"
        ).fetchall()
        return [
            dead_letter_group(
                reason,
                source,
                count,
                last,
                db.execute(
                    "SELECT id, received_at, detail, raw FROM dead_letters WHERE reason = %s AND source = %s "
                    "ORDER BY id DESC LIMIT %s",
                    (reason, source, samples),
                ).fetchall(),
                storage.cipher,
            )
            for reason, source, count, last in groups
        ]


def replay_dead_letters(storage: PostgresStore, reason: str, limit: int = 10_000) -> dict[str, int]:
    """See ``sqlite_console.replay_dead_letters``. The rows are locked while they are
    replayed (``FOR UPDATE SKIP LOCKED``), so two hubs replaying at once take different rows."""
    with storage.writing() as db:
        rows = db.execute(
            "SELECT id, source, raw FROM dead_letters WHERE reason = %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (reason, limit),
        ).fetchall()
        events, taken, kept = replay_plan(rows, storage.cipher)
        report = storage.ingest(events, "replay", now_iso())
        db.execute("DELETE FROM dead_letters WHERE id = ANY(%s)", (taken,))
    return replay_report(taken, events, report, kept)


def consent_by_day(storage: PostgresStore, days: int = 14) -> list[dict[str, Any]]:
    with storage.reading() as db:
        return consent_days(db.execute(CONSENT_BY_DAY.format(since="%s"), (since_day(days),)).fetchall())


def marts_lag(storage: PostgresStore) -> dict[str, Any]:
    """Events the marts have not folded yet (inserted at or past the watermark's
    transaction), and the newest event's receive time."""
    with storage.reading() as db:
        mark = db.execute("SELECT mark FROM watermarks WHERE name = 'events'").fetchone()
        behind = db.execute("SELECT count(*) FROM events WHERE txid >= %s", (int(mark[0]) if mark else 0,)).fetchone()
        newest = db.execute("SELECT received_at FROM events ORDER BY txid DESC, seq DESC LIMIT 1").fetchone()
    return {"events_behind": int(behind[0]) if behind else 0, "newest_received": newest[0] if newest else None}
