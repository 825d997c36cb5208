"""A data subject in the PostgreSQL tiers: find every identifier, erase, or export
(the method is ``sqlite_subjects``'s). The erasure is one transaction over the three
tiers, so no reader ever sees the subject half erased, and a failure erases nothing.
Deleted rows stay in the table files until ``VACUUM`` reclaims them (autovacuum does,
shortly after); PostgreSQL has no ``secure_delete``, so docs/PRIVACY.md asks for
encrypted storage under a PostgreSQL warehouse."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from hub.ingest.batch import EVENT_COLUMNS
from hub.pii import PiiCipher
from hub.storage.common import export_document
from hub.storage.interface import SubjectIds
from hub.storage.sqlite_subjects import FEATURE_COLUMNS, subject_ids

if TYPE_CHECKING:
    import psycopg

    from hub.storage.postgres import PostgresStore


def resolve(storage: PostgresStore, given: str, key: bytes) -> SubjectIds:
    with storage.reading() as db:
        return subject_ids(
            given,
            key,
            lambda pseud: [
                r[0]
                for r in db.execute(
                    "SELECT anonymous_id FROM identities WHERE user_id = %s UNION "
                    "SELECT anonymous_id FROM events WHERE user_id = %s AND anonymous_id IS NOT NULL",
                    (pseud, pseud),
                ).fetchall()
            ],
        )


def _event_days(db: psycopg.Connection[Any], ids: list[str]) -> dict[str, list[str]]:
    days: dict[str, list[str]] = defaultdict(list)
    for event_id, received in db.execute(
        "SELECT event_id, received_at FROM events WHERE user_id = ANY(%s) UNION "
        "SELECT event_id, received_at FROM events WHERE anonymous_id = ANY(%s)",
        (ids, ids),
    ).fetchall():
        days[str(received)[:10]].append(event_id)
    return days


def _tokens(storage: PostgresStore, ids: list[str]) -> list[str]:
    tokenizer = storage.tokenizer
    return sorted({tokenizer(i) for i in ids if i}) if tokenizer is not None else []


def erase(storage: PostgresStore, subject: SubjectIds) -> dict[str, int]:
    """Delete the subject from lake, warehouse and marts in one transaction."""
    ids = sorted(subject.all)
    needles = sorted(subject.all | {subject.given})
    counts: dict[str, int] = {}

    def delete(name: str, sql: str, params: tuple[Any, ...]) -> None:
        counts[name] = counts.get(name, 0) + max(db.execute(sql, params).rowcount, 0)

    with storage.writing() as db:
        lake_rows = 0
        for day, event_ids in sorted(_event_days(db, ids).items()):
            gone = max(db.execute("DELETE FROM lake_events WHERE day = %s AND event_id = ANY(%s)", (day, event_ids)).rowcount, 0)
            if gone:
                storage.lake_changed(db, day, gone)
            lake_rows += gone
        counts["lake.raw_events"] = lake_rows
        delete("warehouse.events", "DELETE FROM events WHERE user_id = ANY(%s) OR anonymous_id = ANY(%s)", (ids, ids))
        delete("warehouse.users", "DELETE FROM users WHERE user_id = ANY(%s)", (ids,))
        delete("warehouse.identities", "DELETE FROM identities WHERE user_id = ANY(%s) OR anonymous_id = ANY(%s)", (ids, ids))
        delete("warehouse.consent_log", "DELETE FROM consent_log WHERE subject = ANY(%s)", (ids,))
        counts["warehouse.dead_letters"] = 0
        for token in _tokens(storage, needles):
            delete("warehouse.dead_letters", "DELETE FROM dead_letters WHERE strpos(subjects, %s) > 0", (token,))
        for needle in needles:
            delete(
                "warehouse.dead_letters",
                "DELETE FROM dead_letters WHERE strpos(raw, %s) > 0 OR strpos(detail, %s) > 0",
                (needle, needle),
            )
        delete("marts.user_features", "DELETE FROM user_features WHERE subject = ANY(%s)", (ids,))
        delete("marts.exposures", "DELETE FROM exposures WHERE visitor = ANY(%s) OR user_id = ANY(%s)", (ids, ids))
        delete("marts.bandit_units", "DELETE FROM bandit_units WHERE unit = ANY(%s)", (ids,))
    return counts


def export(storage: PostgresStore, subject: SubjectIds, cipher: PiiCipher) -> dict[str, Any]:
    """Everything the tiers hold about the subject (the access request), read in one
    snapshot."""
    ids = sorted(subject.all)
    cols = ", ".join(EVENT_COLUMNS)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with storage.reading() as db, db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        def read(name: str, sql: str, params: tuple[Any, ...]) -> None:
            rows[name] = rows.get(name, []) + db.execute(sql, params).fetchall()

        read("users", "SELECT user_id, first_seen, last_seen, attributes, pii FROM users WHERE user_id = ANY(%s)", (ids,))
        read(
            "events",
            f"SELECT {cols} FROM events WHERE user_id = ANY(%s) OR anonymous_id = ANY(%s) ORDER BY ts, seq",
            (ids, ids),
        )
        rows["dead_letters"] = []
        for token in _tokens(storage, sorted(subject.all | {subject.given})):
            read(
                "dead_letters",
                "SELECT id, received_at, source, reason, detail, raw FROM dead_letters WHERE strpos(subjects, %s) > 0",
                (token,),
            )
        read(
            "identities",
            "SELECT anonymous_id, user_id, first_seen FROM identities WHERE user_id = ANY(%s) OR anonymous_id = ANY(%s) "
            "ORDER BY first_seen, anonymous_id, user_id",
            (ids, ids),
        )
        read(
            "consents",
            "SELECT event_id, subject, categories, source, edge, ts, received_at, tcf FROM consent_log "
            "WHERE subject = ANY(%s) ORDER BY received_at, ts",
            (ids,),
        )
        read("features", f"SELECT {FEATURE_COLUMNS} FROM user_features WHERE subject = ANY(%s)", (ids,))
        read(
            "exposures",
            "SELECT experiment, variant, first_ts, last_ts, n FROM exposures WHERE visitor = ANY(%s) OR user_id = ANY(%s) "
            "ORDER BY experiment, first_ts",
            (ids, ids),
        )
        read(
            "bandits",
            "SELECT experiment, variant, mixed, first_jd, converted FROM bandit_units WHERE unit = ANY(%s) ORDER BY experiment",
            (ids,),
        )
        rows["lake"] = []
        for day, event_ids in sorted(_event_days(db, ids).items()):
            read("lake", "SELECT body FROM lake_events WHERE day = %s AND event_id = ANY(%s) ORDER BY seq", (day, event_ids))
    return export_document(subject.pseudonym, subject.anonymous_ids, rows, EVENT_COLUMNS, FEATURE_COLUMNS.split(", "), cipher)
