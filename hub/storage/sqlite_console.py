"""What the operator console reads from the SQLite tiers that the API did not already
serve: dead letters per reason (with redacted samples) and their replay, consent
choices per category and day, and how far the marts lag the warehouse."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.ingest.batch import IngestReport
from hub.personal import open_dead_letter
from hub.pii import PiiCipher

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

#: Keys whose values a dead letter's sample never shows: ids, traits, addresses.
PERSONAL_KEYS = frozenset(
    {"anonymous_id", "user_id", "traits", "email", "phone", "name", "ip", "address", "identity_token", "order_id"}
)
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[a-z]{2,}", re.IGNORECASE)
SAMPLE_CHARS = 600
CONSENT_CATEGORIES = ("necessary", "analytics", "personalization", "marketing")


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with personal keys' values and e-mail-like strings masked."""
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in PERSONAL_KEYS else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _EMAIL.sub("[e-mail]", value)
    return value


def sample_of(raw: str) -> str:
    """A dead letter's payload as the console shows it: redacted, cut short."""
    try:
        text = json.dumps(redact(json.loads(raw)), ensure_ascii=False)
    except ValueError:
        text = _EMAIL.sub("[e-mail]", raw)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


def dead_letters(storage: SqliteStore, samples: int = 3) -> list[dict[str, Any]]:
    """Per reason and source: how many, the last, and a few redacted samples."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        groups = db.execute(
            "SELECT reason, source, COUNT(*), MAX(received_at) FROM dead_letters GROUP BY reason, source ORDER BY 3 DESC LIMIT 100"
        ).fetchall()
        out = []
        for reason, source, count, last in groups:
            rows = db.execute(
                "SELECT id, received_at, detail, raw FROM dead_letters WHERE reason = ? AND source = ? ORDER BY id DESC LIMIT ?",
                (reason, source, samples),
            ).fetchall()
            out.append(dead_letter_group(reason, source, count, last, rows, storage.cipher))
        return out
    finally:
        db.close()


def dead_letter_group(
    reason: str, source: str, count: int, last: str, rows: Sequence[tuple[Any, ...]], cipher: PiiCipher | None
) -> dict[str, Any]:
    """One reason and source's dead letters as the console shows them, with samples
    from (id, received, detail, payload) rows."""
    return {
        "reason": reason,
        "source": source,
        "count": int(count),
        "last": last,
        "samples": [
            {
                "id": int(i),
                "received_at": at,
                "detail": _EMAIL.sub("[e-mail]", str(detail or ""))[:200],
                "payload": sample_of(open_dead_letter(str(raw or ""), cipher) if cipher else str(raw or "")),
            }
            for i, at, detail, raw in rows
        ],
    }


def replay_dead_letters(storage: SqliteStore, reason: str, limit: int = 10_000) -> dict[str, int]:
    """Ingest again the dead letters of one reason (after a fix: a contract, a catalog):
    what passes is stored (the event id still deduplicates), what fails is dead-lettered
    again with its reason now; the replayed rows are removed. Payloads that are not
    JSON events stay as they are."""
    wh = storage.warehouse
    with storage.lock:
        rows = wh.execute(
            "SELECT id, source, raw FROM dead_letters WHERE reason = ? ORDER BY id LIMIT ?", (reason, limit)
        ).fetchall()
    events, taken, kept = replay_plan(rows, storage.cipher)
    report = storage.ingest(events, "replay", now_iso())
    with storage.lock:
        wh.execute("BEGIN IMMEDIATE")
        try:
            for s in range(0, len(taken), 500):
                chunk = taken[s : s + 500]
                wh.execute(f"DELETE FROM dead_letters WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            wh.execute("COMMIT")
        except BaseException:
            wh.execute("ROLLBACK")
            raise
    return replay_report(taken, events, report, kept)


def replay_plan(rows: Sequence[tuple[Any, ...]], cipher: PiiCipher | None) -> tuple[list[Any], list[int], int]:
    """From (id, source, payload) dead letters: the events to ingest again, the rows
    they came from, and how many rows are left as they are (not JSON events)."""
    events: list[Any] = []
    taken: list[int] = []
    kept = 0
    for row_id, _source, raw in rows:
        text = open_dead_letter(str(raw or ""), cipher) if cipher else str(raw or "")
        try:
            doc = json.loads(text)
        except ValueError:
            kept += 1
            continue
        batch = doc if isinstance(doc, list) else [doc]
        if not all(isinstance(e, dict) for e in batch):
            kept += 1
            continue
        events.extend(batch)
        taken.append(int(row_id))
    return events, taken, kept


def replay_report(taken: list[int], events: list[Any], report: IngestReport, kept: int) -> dict[str, int]:
    return {
        "rows": len(taken),
        "events": len(events),
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "dead_again": sum(report.dead.values()),
        "left_unreadable": kept,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def consent_by_day(storage: SqliteStore, days: int = 14) -> list[dict[str, Any]]:
    """Consent choices per day (receive time): how many, and per category how many
    granted it; the rest of that day's choices left it out."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = db.execute(CONSENT_BY_DAY.format(since="?"), (since_day(days),)).fetchall()
    finally:
        db.close()
    return consent_days(rows)


CONSENT_BY_DAY = (
    "SELECT substr(received_at, 1, 10), categories, COUNT(*) FROM consent_log WHERE received_at >= {since} "
    "GROUP BY 1, 2 ORDER BY 1"
)


def since_day(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")


def consent_days(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Per day, from (day, categories JSON, choices) rows: choices, and grants per category."""
    per_day: dict[str, Counter[str]] = {}
    for day, categories, n in rows:
        counts = per_day.setdefault(str(day), Counter())
        counts["choices"] += int(n)
        try:
            granted = json.loads(categories or "[]")
        except ValueError:
            granted = []
        for category in CONSENT_CATEGORIES:
            if category in granted:
                counts[category] += int(n)
    return [{"day": day, **{k: c[k] for k in ("choices", *CONSENT_CATEGORIES)}} for day, c in sorted(per_day.items())]


def marts_lag(storage: SqliteStore) -> dict[str, Any]:
    """Events in the warehouse the marts have not folded yet, and the newest event's
    receive time."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        db.execute("ATTACH DATABASE ? AS marts", (f"file:{storage.data_dir / 'marts.sqlite'}?mode=ro",))
        top = db.execute("SELECT MAX(rowid) FROM events").fetchone()[0] or 0
        mark = db.execute("SELECT rowid FROM marts.watermarks WHERE name = 'events'").fetchone()
        newest = db.execute("SELECT received_at FROM events WHERE rowid = ?", (top,)).fetchone()
    finally:
        db.close()
    return {"events_behind": int(top) - (int(mark[0]) if mark else 0), "newest_received": newest[0] if newest else None}
