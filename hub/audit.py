"""The append-only, hash-chained audit log (``audit.sqlite`` beside the hub's data).

Each entry's ``hash`` is HMAC-SHA256(audit key, previous hash ‖ canonical JSON of the
entry), so changing an entry breaks its own hash, removing one breaks the next
entry's ``prev`` and the sequence, and nobody without the key can re-forge the chain
after an edit. SQLite triggers refuse ``UPDATE`` and ``DELETE`` on the table (a first
line, not the proof: the chain is). The head (last sequence and hash) is also written
to ``audit.head``; ``p13n audit verify`` checks the chain and the head, and
``--head SEQ:HASH`` checks against a head recorded elsewhere (truncation evidence).

Entries never hold a raw subject id or pseudonym: subject endpoints are logged with
the subject's erasure token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_FIELDS = ("seq", "ts", "actor", "role", "action", "target", "status", "detail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps({k: entry[k] for k in _FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(key: bytes, prev: str, entry: dict[str, Any]) -> str:
    return hmac.new(key, prev.encode() + b"\n" + _canonical(entry), hashlib.sha256).hexdigest()


class AuditLog:
    def __init__(self, path: Path, key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.head_path = path.with_suffix(".head")
        self.key = key
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an audit entry survives a power cut
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def append(self, actor: str, role: str, action: str, target: str, status: int, detail: dict[str, Any] | None = None) -> int:
        """Append one entry. The chain head is read inside the write transaction, so
        several hub processes on one data directory extend a single chain."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, head = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
                entry: dict[str, Any] = {
                    "seq": seq,
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "actor": actor,
                    "role": role,
                    "action": action,
                    "target": target,
                    "status": int(status),
                    "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":")),
                }
                digest = chain_hash(self.key, head, entry)
                db.execute(
                    "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*[entry[k] for k in _FIELDS], head, digest)
                )
                tmp = self.head_path.with_suffix(f".head.{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"seq": seq, "hash": digest}))
                tmp.replace(self.head_path)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return seq

    def entries(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_FIELDS)}, prev, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        out = []
        for r in rows:
            entry = dict(zip((*_FIELDS, "prev", "hash"), r, strict=True))
            entry["detail"] = json.loads(entry["detail"])
            out.append(entry)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class VerifyReport:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: Path, key: bytes, expect_head: tuple[int, str] | None = None, since: tuple[int, str] | None = None
) -> VerifyReport:
    """Walk the chain from the start (or from ``since``: an entry already verified, its
    sequence and hash); report every break (changed, removed, reordered)."""
    report = VerifyReport()
    if not path.exists():
        report.problems.append(f"{path} does not exist")
        return report
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        prev, expected_seq = GENESIS, 1
        if since is not None:
            expected_seq, prev = since[0] + 1, since[1]
            report.head_seq, report.head_hash = since
        for row in db.execute(f"SELECT {', '.join(_FIELDS)}, prev, hash FROM audit WHERE seq >= ? ORDER BY seq", (expected_seq,)):
            entry = dict(zip((*_FIELDS, "prev", "hash"), row, strict=True))
            seq = int(entry["seq"])
            if seq != expected_seq:
                report.problems.append(f"entries {expected_seq}..{seq - 1} are missing")
            if entry["prev"] != prev:
                report.problems.append(f"entry {seq}: does not follow the entry before it (removed or reordered)")
            if chain_hash(key, str(entry["prev"]), entry) != entry["hash"]:
                report.problems.append(f"entry {seq}: content does not match its hash (changed)")
            prev, expected_seq = str(entry["hash"]), seq + 1
            report.entries += 1
            report.head_seq, report.head_hash = seq, prev
    finally:
        db.close()
    head_file = path.with_suffix(".head")
    if head_file.exists():
        head = json.loads(head_file.read_text())
        if (int(head["seq"]), str(head["hash"])) != (report.head_seq, report.head_hash):
            report.problems.append(
                f"the log ends at entry {report.head_seq} but audit.head names entry {head['seq']} (truncated?)"
            )
    if expect_head is not None and expect_head != (report.head_seq, report.head_hash):
        seq, digest = expect_head
        known = [r for r in _hashes_at(path, seq) if r == digest]
        if not known:
            report.problems.append(f"the recorded head {seq}:{digest[:12]}… is not in the log (changed or truncated)")
    return report


def _hashes_at(path: Path, seq: int) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in db.execute("SELECT hash FROM audit WHERE seq = ?", (seq,))]
    finally:
        db.close()


def audit_local(settings: Any, action: str, target: str, status: int, detail: dict[str, Any]) -> bool:
    """Append an entry for a command that changed the hub's data or tokens directly
    (actor ``cli:<user>``), to the same chain the API writes. False, with a line on
    stderr, when the hub's audit key is not available here: an entry signed with another
    key would break the chain for ``p13n audit verify``."""
    import getpass
    import sys

    data_dir: Path = settings.data_dir
    if not settings.audit_key and not (data_dir / "audit-dev.key").exists():
        print(
            f"p13n: {action} not audited: set P13N_HUB_AUDIT_KEY and P13N_HUB_DATA_DIR as for the hub",
            file=sys.stderr,
        )
        return False
    log = AuditLog(data_dir / "audit.sqlite", settings.audit_secret)
    try:
        log.append(f"cli:{getpass.getuser()}", "local", action, target, status, detail)
    finally:
        log.close()
    return True
