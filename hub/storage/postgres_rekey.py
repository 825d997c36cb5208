"""Key rotation in the PostgreSQL tiers (``p13n pii rekey``; see ``sqlite_rekey``):
users' PII, identify traits in the warehouse and the lake, and dead letters are
re-encrypted with the ring's first key, all in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.pii import PiiCipher, PiiKeyError
from hub.storage.interface import RekeyReport
from hub.storage.sqlite_rekey import SEALED_DEAD, SEALED_TRAITS, rekeyed_users, resealed_dead_letter, resealed_doc

if TYPE_CHECKING:
    from hub.storage.postgres import PostgresStore


def rekey(storage: PostgresStore, cipher: PiiCipher) -> RekeyReport:
    report = RekeyReport(active_key=cipher.active_id)
    with storage.writing() as db, db.cursor() as cur:
        rows = cur.execute("SELECT user_id, pii FROM users WHERE pii IS NOT NULL FOR UPDATE").fetchall()
        cur.executemany("UPDATE users SET pii = %s WHERE user_id = %s", [(v, u) for u, v in rekeyed_users(rows, cipher, report)])
        changed = failed = 0
        for table, key, column in (("events", "event_id", "props"), ("lake_events", "event_id", "body")):
            updates: list[tuple[Any, ...]] = []
            for event_id, text in cur.execute(
                f"SELECT {key}, {column} FROM {table} WHERE {column} LIKE %s FOR UPDATE", (SEALED_TRAITS,)
            ).fetchall():
                try:
                    fresh = resealed_doc(event_id, text, cipher)
                except PiiKeyError:
                    failed += 1
                    continue
                if fresh is not None:
                    updates.append((fresh, event_id, text))
            # a lake event may be in two days' rows (redelivered after midnight): match the text too
            cur.executemany(f"UPDATE {table} SET {column} = %s WHERE {key} = %s AND {column} = %s", updates)
            changed += len(updates)
        dead: list[tuple[str, int]] = []
        for did, raw in cur.execute("SELECT id, raw FROM dead_letters WHERE raw LIKE %s FOR UPDATE", (SEALED_DEAD,)).fetchall():
            try:
                fresh = resealed_dead_letter(raw, cipher)
            except PiiKeyError:
                failed += 1
                continue
            if fresh is not None:
                dead.append((fresh, did))
        cur.executemany("UPDATE dead_letters SET raw = %s WHERE id = %s", dead)
        changed += len(dead)
    report.sealed_reencrypted += changed
    report.failed += failed
    return report
