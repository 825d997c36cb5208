"""A data subject in the SQLite tiers: find every identifier, erase, or export.

A request names a subject by a raw user id, a pseudonym (``p1_…``) or an anonymous
visitor id. Its identifiers are the pseudonym, every anonymous id linked to it
(identities, and events that carried both) and the given id itself as a possible
visitor id. Lake rows are found through the warehouse (every lake row has its
warehouse twin: lake retention never exceeds warehouse retention), so an erasure
touches only the subject's rows, through indexes, whatever the warehouse size.
Connections use ``secure_delete`` and are checkpointed with ``TRUNCATE`` afterwards, so
no copy stays in free pages or the WAL.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hub.ingest.batch import EVENT_COLUMNS
from hub.pii import PiiCipher
from hub.storage.common import export_document
from hub.storage.interface import SubjectIds
from models.pseudonym import is_pseudonym, pseudonym, valid_visitor_id

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

_CHUNK = 400
#: The marts' per-subject columns, as the export shows them.
FEATURE_COLUMNS = "subject, views, clicks, scrolls, carts, purchases, revenue_minor, last_ts, category_views"


def _in(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def subject_ids(given: str, key: bytes, linked: Callable[[str], Iterable[str]]) -> SubjectIds:
    """The subject ``given`` names: its pseudonym, and the anonymous ids ``linked(pseudonym)``
    finds (identities, and events that carried both)."""
    given = given.strip()
    pseud = given if is_pseudonym(given) else pseudonym(given, key)
    anon: set[str] = set()
    if valid_visitor_id(given) and not is_pseudonym(given):
        anon.add(given)  # a visitor id: edges may hold its session even when the hub has nothing
    anon.update(linked(pseud))
    anon.discard("")
    anon.discard(pseud)
    return SubjectIds(given, pseud, frozenset(anon))


def resolve(storage: SqliteStore, given: str, key: bytes) -> SubjectIds:
    db = storage.warehouse

    def linked(pseud: str) -> list[str]:
        with storage.lock:
            return [
                r[0]
                for r in db.execute(
                    "SELECT anonymous_id FROM identities WHERE user_id = ? UNION "
                    "SELECT anonymous_id FROM events WHERE user_id = ? AND anonymous_id IS NOT NULL",
                    (pseud, pseud),
                )
            ]

    return subject_ids(given, key, linked)


def _event_days(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[str]]:
    """Lake day → event ids of the subject (from the warehouse)."""
    days: dict[str, list[str]] = defaultdict(list)
    marks = _in(ids)
    for event_id, received in db.execute(
        f"SELECT event_id, received_at FROM events WHERE user_id IN ({marks}) UNION "
        f"SELECT event_id, received_at FROM events WHERE anonymous_id IN ({marks})",
        [*ids, *ids],
    ):
        days[str(received)[:10]].append(event_id)
    return days


def _tokens(storage: SqliteStore, ids: Sequence[str]) -> list[str]:
    tokenizer = storage.tokenizer
    return sorted({tokenizer(i) for i in ids if i}) if tokenizer is not None else []


def _truncate_wal(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def erase(storage: SqliteStore, subject: SubjectIds) -> dict[str, int]:
    """Delete the subject from lake, warehouse and marts; returns rows deleted per table."""
    ids = sorted(subject.all)
    needles = sorted(subject.all | {subject.given})
    marks = _in(ids)
    counts: dict[str, int] = {}
    with storage.lock:
        wh = storage.warehouse
        days = _event_days(wh, ids)
        lake_rows = 0
        for day, event_ids in sorted(days.items()):
            path = storage.lake_dir / f"events-{day}.sqlite"
            if not path.exists():
                continue
            lake = storage.lake(day)
            lake.execute("BEGIN IMMEDIATE")
            for i in range(0, len(event_ids), _CHUNK):
                chunk = event_ids[i : i + _CHUNK]
                lake_rows += lake.execute(f"DELETE FROM raw_events WHERE event_id IN ({_in(chunk)})", chunk).rowcount
            lake.execute("COMMIT")
            _truncate_wal(lake)
        counts["lake.raw_events"] = lake_rows
        wh.execute("BEGIN IMMEDIATE")
        try:
            counts["warehouse.events"] = wh.execute(f"DELETE FROM events WHERE user_id IN ({marks})", ids).rowcount
            counts["warehouse.events"] += wh.execute(f"DELETE FROM events WHERE anonymous_id IN ({marks})", ids).rowcount
            counts["warehouse.users"] = wh.execute(f"DELETE FROM users WHERE user_id IN ({marks})", ids).rowcount
            counts["warehouse.identities"] = wh.execute(
                f"DELETE FROM identities WHERE user_id IN ({marks}) OR anonymous_id IN ({marks})", [*ids, *ids]
            ).rowcount
            counts["warehouse.consent_log"] = wh.execute(f"DELETE FROM consent_log WHERE subject IN ({marks})", ids).rowcount
            dead = 0
            # sealed payloads are found by the erasure tokens kept beside them; older
            # plaintext rows by the ids themselves (a scan: the table is small)
            for token in _tokens(storage, needles):
                dead += wh.execute("DELETE FROM dead_letters WHERE instr(subjects, ?) > 0", (token,)).rowcount
            for needle in needles:
                dead += wh.execute(
                    "DELETE FROM dead_letters WHERE instr(raw, ?) > 0 OR instr(detail, ?) > 0", (needle, needle)
                ).rowcount
            counts["warehouse.dead_letters"] = dead
            wh.execute("COMMIT")
        except BaseException:
            wh.execute("ROLLBACK")
            raise
        _truncate_wal(wh)
        storage.events_deleted()
        marts = storage.marts
        counts["marts.user_features"] = marts.execute(f"DELETE FROM user_features WHERE subject IN ({marks})", ids).rowcount
        counts["marts.exposures"] = marts.execute(
            f"DELETE FROM exposures WHERE visitor IN ({marks}) OR user_id IN ({marks})", [*ids, *ids]
        ).rowcount
        counts["marts.bandit_units"] = marts.execute(f"DELETE FROM bandit_units WHERE unit IN ({marks})", ids).rowcount
        _truncate_wal(marts)
    return counts


def export(storage: SqliteStore, subject: SubjectIds, cipher: PiiCipher) -> dict[str, Any]:
    """Everything the hub's tiers hold about the subject (the access request)."""
    ids = sorted(subject.all)
    both = [*ids, *ids]
    marks = _in(ids)
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    marts = storage.reader(storage.data_dir / "marts.sqlite")
    rows: dict[str, list[tuple[Any, ...]]] = {}
    try:
        rows["users"] = wh.execute(
            f"SELECT user_id, first_seen, last_seen, attributes, pii FROM users WHERE user_id IN ({marks})", ids
        ).fetchall()
        rows["events"] = wh.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE user_id IN ({marks}) UNION "
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE anonymous_id IN ({marks}) ORDER BY ts",
            both,
        ).fetchall()
        # events and messages that could not be stored, naming the subject (sealed at rest)
        rows["dead_letters"] = [
            r
            for token in _tokens(storage, sorted(subject.all | {subject.given}))
            for r in wh.execute(
                "SELECT id, received_at, source, reason, detail, raw FROM dead_letters WHERE instr(subjects, ?) > 0", (token,)
            )
        ]
        rows["identities"] = wh.execute(
            f"SELECT anonymous_id, user_id, first_seen FROM identities WHERE user_id IN ({marks}) OR anonymous_id IN ({marks}) "
            "ORDER BY first_seen, anonymous_id, user_id",
            both,
        ).fetchall()
        rows["consents"] = wh.execute(
            "SELECT event_id, subject, categories, source, edge, ts, received_at, tcf FROM consent_log "
            f"WHERE subject IN ({marks}) ORDER BY received_at, ts",
            ids,
        ).fetchall()
        days = _event_days(wh, ids)
        rows["features"] = marts.execute(
            f"SELECT {FEATURE_COLUMNS} FROM user_features WHERE subject IN ({marks})", ids
        ).fetchall()
        rows["exposures"] = marts.execute(
            "SELECT experiment, variant, first_ts, last_ts, n FROM exposures "
            f"WHERE visitor IN ({marks}) OR user_id IN ({marks}) ORDER BY experiment, first_ts",
            both,
        ).fetchall()
        rows["bandits"] = marts.execute(
            f"SELECT experiment, variant, mixed, first_jd, converted FROM bandit_units WHERE unit IN ({marks}) ORDER BY experiment",
            ids,
        ).fetchall()
    finally:
        wh.close()
        marts.close()
    rows["lake"] = []
    for day, event_ids in sorted(days.items()):
        path = storage.lake_dir / f"events-{day}.sqlite"
        if not path.exists():
            continue
        lake = storage.reader(path)
        try:
            for i in range(0, len(event_ids), _CHUNK):
                chunk = event_ids[i : i + _CHUNK]
                rows["lake"] += lake.execute(f"SELECT body FROM raw_events WHERE event_id IN ({_in(chunk)})", chunk).fetchall()
        finally:
            lake.close()
    return export_document(subject.pseudonym, subject.anonymous_ids, rows, EVENT_COLUMNS, FEATURE_COLUMNS.split(", "), cipher)
