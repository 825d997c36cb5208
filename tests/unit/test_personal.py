"""Sealed personal data: identify traits and dead letters are encrypted before the
lake and the warehouse see them, found again by erasure tokens, and re-encrypted by a
key rotation (``p13n pii rekey``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson

from hub.personal import open_dead_letter, open_traits
from hub.pii import PiiCipher
from hub.storage import SubjectIds
from hub.storage.sqlite import SqliteStore
from hub.storage.sqlite_rekey import reseal_all
from models.erasure import Tokenizer

KEY = b"personal-key"
RECEIVED = "2026-11-26T10:00:00.000Z"
K1 = ("k1", os.urandom(32))
K2 = ("k2", os.urandom(32))


def _everything(storage: SqliteStore) -> bytes:
    storage.warehouse.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for db in storage._lakes.values():
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(p.read_bytes() for p in storage.data_dir.rglob("*") if p.is_file())


def test_traits_and_dead_letters_are_sealed_found_and_rotated(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path)
    storage.tokenizer = Tokenizer(KEY)
    storage.cipher = PiiCipher([K1])
    identify = {
        "event_id": uuid.uuid4().hex,
        "type": "identify",
        "user_id": "p1_" + "a" * 40,
        "anonymous_id": "visitorSealed0000000001",
        "traits": {"email": "sealed@example.org", "phone": "+33 1 23 45 67 89"},
        "received_at": RECEIVED,
    }
    broken = {
        "event_id": uuid.uuid4().hex,
        "type": "identify",
        "anonymous_id": "visitorSealed0000000001",
        "traits": {"email": "dead@example.org"},
    }
    try:
        report = storage.ingest([dict(identify), broken], "api", RECEIVED)
        assert report.accepted == 1 and sum(report.dead.values()) == 1
        blob = _everything(storage)
        assert b"sealed@example.org" not in blob and b"+33 1 23" not in blob and b"dead@example.org" not in blob
        (props,) = storage.warehouse.execute("SELECT props FROM events").fetchone()
        opened = orjson.loads(props)
        open_traits(opened, identify["event_id"], storage.cipher)
        assert opened["traits"] == identify["traits"]
        (raw, subjects) = storage.warehouse.execute("SELECT raw, subjects FROM dead_letters").fetchone()
        assert orjson.loads(open_dead_letter(raw, storage.cipher))["traits"] == {"email": "dead@example.org"}
        assert subjects == storage.tokenizer("visitorSealed0000000001")

        # rotation: the new key first, the old one after it; then the new key alone opens all
        changed, failed = reseal_all(storage, PiiCipher([K2, K1]))
        assert (changed, failed) == (3, 0)  # warehouse traits, lake traits, the dead letter
        only_k2 = PiiCipher([K2])
        (props,) = storage.warehouse.execute("SELECT props FROM events").fetchone()
        opened = orjson.loads(props)
        open_traits(opened, identify["event_id"], only_k2)
        assert opened["traits"] == identify["traits"]
        (raw,) = storage.warehouse.execute("SELECT raw FROM dead_letters").fetchone()
        assert "dead@example.org" in open_dead_letter(raw, only_k2)
        assert reseal_all(storage, PiiCipher([K2, K1])) == (0, 0)  # nothing left on the old key

        # the erasure finds the sealed dead letter through its token
        counts = storage.erase_subject(
            SubjectIds("visitorSealed0000000001", "p1_" + "a" * 40, frozenset({"visitorSealed0000000001"}))
        )
        assert counts["warehouse.dead_letters"] == 1 and counts["warehouse.events"] == 1
    finally:
        storage.close()
