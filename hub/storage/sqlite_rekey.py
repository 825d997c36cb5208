"""Key rotation in the SQLite tiers (``p13n pii rekey``): every value sealed under an
older key of the ring is re-encrypted with its first key — users' PII, identify traits
in the warehouse and in every lake file, dead letters — each tier in one transaction,
then checkpointed with ``TRUNCATE`` so no old ciphertext stays in the WAL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from hub.personal import DEAD_LETTER_AAD, resealed_traits
from hub.pii import PiiCipher, PiiKeyError
from hub.storage.interface import RekeyReport

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore


def rekey(storage: SqliteStore, cipher: PiiCipher) -> RekeyReport:
    report = RekeyReport(active_key=cipher.active_id)
    with storage.lock:
        db = storage.warehouse
        rows = db.execute("SELECT user_id, pii FROM users WHERE pii IS NOT NULL").fetchall()
        db.execute("BEGIN IMMEDIATE")
        try:
            for user_id, fresh in rekeyed_users(rows, cipher, report):
                db.execute("UPDATE users SET pii = ? WHERE user_id = ?", (fresh, user_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sealed, failed = reseal_all(storage, cipher)  # identify traits and dead letters
    report.sealed_reencrypted += sealed
    report.failed += failed
    return report


def rekeyed_users(rows: Iterable[tuple[str, str]], cipher: PiiCipher, report: RekeyReport) -> Iterator[tuple[str, str]]:
    """(user id, PII sealed with the active key) for each (user id, PII) row sealed
    with an older one; counted in ``report``."""
    for user_id, value in rows:
        try:
            if cipher.key_id(value) == cipher.active_id:
                continue
            fresh = cipher.encrypt(cipher.decrypt(value, aad=user_id), aad=user_id)
        except PiiKeyError as e:
            report.failed += 1
            report.errors.append(f"a value does not decrypt ({e})")
            continue
        report.reencrypted += 1
        yield user_id, fresh


def resealed_doc(event_id: str, text: str, cipher: PiiCipher) -> str | None:
    """The JSON document with its sealed traits under the active key; None when they
    are on it already. Raises :class:`PiiKeyError` when they do not open."""
    doc = orjson.loads(text)
    if isinstance(doc, dict) and resealed_traits(doc, event_id, cipher):
        return orjson.dumps(doc).decode()
    return None


def resealed_dead_letter(raw: str, cipher: PiiCipher) -> str | None:
    """A sealed dead letter under the active key; None when it is on it already."""
    if cipher.key_id(raw) == cipher.active_id:
        return None
    return cipher.encrypt(cipher.decrypt(raw, DEAD_LETTER_AAD), DEAD_LETTER_AAD)


#: Documents holding sealed traits (a LIKE pattern).
SEALED_TRAITS = '%"sealed":"pii1:%'
#: Sealed dead letters (a LIKE pattern).
SEALED_DEAD = "pii1:%"


def _reseal_table(db: Any, table: str, column: str, cipher: PiiCipher) -> tuple[int, int]:
    """Re-encrypt the sealed traits in ``table.column`` (JSON documents keyed by
    ``event_id``) inside the caller's transaction; (re-encrypted, failed)."""
    changed = failed = 0
    rows = db.execute(f"SELECT event_id, {column} FROM {table} WHERE {column} LIKE ?", (SEALED_TRAITS,)).fetchall()
    for event_id, text in rows:
        try:
            fresh = resealed_doc(event_id, text, cipher)
        except PiiKeyError:
            failed += 1
            continue
        if fresh is not None:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE event_id = ?", (fresh, event_id))
            changed += 1
    return changed, failed


def reseal_all(storage: SqliteStore, cipher: PiiCipher) -> tuple[int, int]:
    """Re-encrypt every sealed trait (warehouse and lake) and dead letter with the
    ring's first key (``p13n pii rekey``). Returns (re-encrypted, failed)."""
    changed = failed = 0
    with storage.lock:
        wh = storage.warehouse
        wh.execute("BEGIN IMMEDIATE")
        try:
            done, bad = _reseal_table(wh, "events", "props", cipher)
            changed, failed = changed + done, failed + bad
            for did, raw in wh.execute("SELECT id, raw FROM dead_letters WHERE raw LIKE ?", (SEALED_DEAD,)).fetchall():
                try:
                    fresh = resealed_dead_letter(raw, cipher)
                except PiiKeyError:
                    failed += 1
                    continue
                if fresh is not None:
                    wh.execute("UPDATE dead_letters SET raw = ? WHERE id = ?", (fresh, did))
                    changed += 1
            wh.execute("COMMIT")
        except BaseException:
            wh.execute("ROLLBACK")
            raise
        wh.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for path in sorted(storage.lake_dir.glob("events-*.sqlite")):
            lake = storage.lake(path.stem.removeprefix("events-"))
            lake.execute("BEGIN IMMEDIATE")
            try:
                done, bad = _reseal_table(lake, "raw_events", "body", cipher)
                changed, failed = changed + done, failed + bad
                lake.execute("COMMIT")
            except BaseException:
                lake.execute("ROLLBACK")
                raise
            lake.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return changed, failed
