"""Console sessions, kept at the hub (``console.sqlite`` beside the data).

A session row holds the SHA-256 of the session id (the cookie's value; the id itself
is never stored), the digest of the API token it was opened with, its CSRF token and
its expiry. Each request maps the token digest back through the tokens file, so a
revoked token or a changed role takes effect on the next click, and sign-out deletes
the row: a copied cookie is worth nothing afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
"""


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Session:
    token_sha256: str
    csrf: str
    expires: float


class SessionStore:
    def __init__(self, path: Path, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def open(self, token_sha256: str, now: float | None = None) -> tuple[str, Session]:
        """A new session for the token: (the cookie value, the session)."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        session = Session(token_sha256, secrets.token_urlsafe(32), now + self.lifetime_s)
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (_digest(session_id), token_sha256, session.csrf, now, session.expires),
            )
        return session_id, session

    def get(self, session_id: str, now: float | None = None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT token_sha256, csrf, expires FROM sessions WHERE id_sha256 = ?", (_digest(session_id),)
            ).fetchone()
        if row is None or float(row[2]) <= now:
            return None
        return Session(str(row[0]), str(row[1]), float(row[2]))

    def close_session(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_digest(session_id),))

    def close(self) -> None:
        with self._lock:
            self._db.close()
