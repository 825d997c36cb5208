"""The edge's one SQLite file (WAL): schema migrations and the shell cache table.

Deletes are secure (``secure_delete``): an erased visitor's rows are overwritten.
One connection guarded by a lock; callers on the event loop go through
``asyncio.to_thread`` for anything but microsecond work. Later tables (sessions,
profiles, bundles, outbox) join the same file through :data:`MIGRATIONS`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.erasure import Tokenizer

#: Ordered schema steps; each runs once, recorded in the same transaction.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE shells (
        key TEXT PRIMARY KEY,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        stored REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX shells_expires ON shells(expires);
    """,
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        body BLOB NOT NULL,
        created REAL NOT NULL
    );
    """,
    """
    CREATE TABLE sessions (
        visitor_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX sessions_expires ON sessions(expires);
    """,
    """
    CREATE TABLE profiles (
        subject TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE suppressions (
        token TEXT PRIMARY KEY,
        created REAL NOT NULL
    );
    CREATE TABLE erasures_applied (
        request_id TEXT PRIMARY KEY,
        applied REAL NOT NULL
    );
    """,
    # one row per accepted request: ``body`` is a JSON array of its events
    """
    ALTER TABLE outbox ADD COLUMN events INTEGER NOT NULL DEFAULT 1;
    """,
    # shells keyed by host + raw target, with the Vary values they were stored under and
    # their size (the cache is bounded); keys of the old form are dropped
    """
    DELETE FROM shells;
    ALTER TABLE shells ADD COLUMN vary TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE shells ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX shells_stored ON shells(stored);
    """,
)


@dataclass(frozen=True, slots=True)
class StoredShell:
    status: int
    headers: dict[str, str]
    body: bytes
    expires: float
    #: (request header, value) pairs of the response's ``Vary``, as at store time
    vary: tuple[tuple[str, str], ...] = ()


#: Expired sessions deleted per statement (:meth:`EdgeStore.purge_expired_sessions`).
PURGE_BATCH = 500


class EdgeStore:
    """The edge database. ``close()`` is idempotent."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        #: Outbox rows deleted since the WAL was last truncated (:meth:`checkpoint_published`).
        self.published_since_checkpoint = 0
        self._db: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # deleted rows are overwritten, not left in free pages: an erasure leaves nothing behind
        self._db.execute("PRAGMA secure_delete=ON")
        self._migrate()
        #: Erasure tokens of erased subjects; their rows are never written again.
        self.suppressed: set[str] = {r[0] for r in self.db.execute("SELECT token FROM suppressions")}
        self.tokenizer: Tokenizer | None = None
        count, size = self.db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM shells").fetchone()
        #: Shells stored and their bytes (kept up to date by the shell methods).
        self._shell_count, self._shell_bytes = int(count), int(size)
        self._db.create_function("p13n_erased", 1, self._erased_sql, deterministic=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("edge store is closed")
        return self._db

    def _migrate(self) -> None:
        with self._lock:
            db = self.db
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (step INTEGER PRIMARY KEY, applied REAL)")
            done = {row[0] for row in db.execute("SELECT step FROM _migrations")}
            for step, sql in enumerate(MIGRATIONS):
                if step in done:
                    continue
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)", (step, time.time()))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise

    def _is_erased(self, identifier: str | None) -> bool:
        return bool(identifier) and self.tokenizer is not None and self.tokenizer(str(identifier)) in self.suppressed

    def _erased_sql(self, identifier: str | None) -> int:
        return 1 if self._is_erased(identifier) else 0

    # ------------------------------------------------------------------ erasure
    def erase(self, request_id: str, tokens: list[str], now: float) -> dict[str, int]:
        """Suppress ``tokens`` and delete their subjects' sessions, profiles and queued
        events; the WAL is truncated so no copy survives there. Idempotent."""
        with self._lock:
            db = self.db
            self.suppressed.update(tokens)
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO suppressions VALUES (?, ?)", [(t, now) for t in tokens])
                counts = {
                    "sessions": db.execute("DELETE FROM sessions WHERE p13n_erased(visitor_id)").rowcount,
                    "profiles": db.execute("DELETE FROM profiles WHERE p13n_erased(subject)").rowcount,
                    # a row is one request's events (one visitor): it goes whole
                    "outbox": db.execute(
                        "DELETE FROM outbox WHERE EXISTS (SELECT 1 FROM json_each(outbox.body) AS e "
                        "WHERE p13n_erased(json_extract(e.value, '$.anonymous_id')) "
                        "OR p13n_erased(json_extract(e.value, '$.user_id')))"
                    ).rowcount,
                }
                db.execute("INSERT OR IGNORE INTO erasures_applied VALUES (?, ?)", (request_id, now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    def get_shell(self, key: str, now: float) -> StoredShell | None:
        with self._lock:
            row = self.db.execute(
                "SELECT status, headers, body, expires, vary FROM shells WHERE key = ? AND expires > ?",
                (key, now),
            ).fetchone()
        if row is None:
            return None
        vary = tuple((str(n), str(v)) for n, v in json.loads(row[4]))
        return StoredShell(row[0], json.loads(row[1]), bytes(row[2]), row[3], vary)

    def put_shell(self, key: str, shell: StoredShell, now: float, max_entries: int, max_bytes: int) -> int:
        """Store a shell, then keep the table within ``max_entries`` and ``max_bytes``
        (expired shells first, then the oldest); returns how many were evicted."""
        with self._lock:
            db = self.db
            db.execute(
                "INSERT OR REPLACE INTO shells (key, status, headers, body, stored, expires, vary, bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    shell.status,
                    json.dumps(shell.headers),
                    shell.body,
                    now,
                    shell.expires,
                    json.dumps(shell.vary),
                    len(shell.body),
                ),
            )
            self._shell_count += 1
            self._shell_bytes += len(shell.body)
            if self._shell_count <= max_entries and self._shell_bytes <= max_bytes:
                return 0  # an upper estimate (replacements count twice): exact below
            return self._bound_shells(now, max_entries, max_bytes)

    def purge_shells(self, now: float, max_entries: int, max_bytes: int) -> int:
        """Delete expired shells and keep the table within its bounds."""
        with self._lock:
            return self._bound_shells(now, max_entries, max_bytes)

    def _bound_shells(self, now: float, max_entries: int, max_bytes: int) -> int:
        db = self.db
        evicted = db.execute("DELETE FROM shells WHERE expires <= ?", (now,)).rowcount
        count, size = db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM shells").fetchone()
        # beyond a bound: drop the oldest tenth below it at once (not one row per insert)
        while count > max_entries or size > max_bytes:
            excess = max(count - int(max_entries * 0.9), 1) if count > max_entries else max(count // 10, 1)
            rows = db.execute("SELECT key, bytes FROM shells ORDER BY stored LIMIT ?", (excess,)).fetchall()
            if not rows:
                break
            db.executemany("DELETE FROM shells WHERE key = ?", [(r[0],) for r in rows])
            evicted += len(rows)
            count -= len(rows)
            size -= sum(r[1] for r in rows)
        self._shell_count, self._shell_bytes = count, size
        return evicted

    # ------------------------------------------------------------------ outbox
    def outbox_add(self, rows: list[tuple[str, str, bytes, int]], now: float) -> None:
        """Append (first event id, subject, JSON array of events, event count) rows in
        one transaction (durable before the 202)."""
        self.commit(rows, now, None)

    def commit(
        self,
        rows: list[tuple[str, str, bytes, int]],
        now: float,
        sessions: Callable[[Callable[[str], str | None]], list[tuple[str, str, float]]] | None,
    ) -> None:
        """Outbox rows (:meth:`outbox_add`), and in the same transaction the (visitor id, JSON,
        expires) rows ``sessions`` returns; it may read a stored session's JSON with the
        function it is given (edge_agent/session_sync.py). Erased subjects' sessions are
        not written."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    db.executemany(
                        "INSERT INTO outbox (event_id, subject, body, events, created) VALUES (?, ?, ?, ?, ?)",
                        [(*r, now) for r in rows],
                    )
                if sessions is not None:

                    def read(visitor_id: str) -> str | None:
                        row = db.execute(
                            "SELECT data FROM sessions WHERE visitor_id = ? AND expires > ?", (visitor_id, now)
                        ).fetchone()
                        return str(row[0]) if row else None

                    written = [r for r in sessions(read) if not self._is_erased(r[0])]
                    db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", written)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def suppress(self, tokens: list[str], now: float) -> None:
        """Suppress ``tokens`` (persisted, so the other workers' :meth:`reload_suppressed` see them)."""
        with self._lock:
            self.suppressed.update(tokens)
            self.db.executemany("INSERT OR IGNORE INTO suppressions VALUES (?, ?)", [(t, now) for t in tokens])

    def reload_suppressed(self) -> None:
        """Read the suppression list again (another worker may have added to it)."""
        with self._lock:
            self.suppressed = {r[0] for r in self.db.execute("SELECT token FROM suppressions")}

    def outbox_batch(self, max_events: int) -> list[tuple[int, bytes, int]]:
        """The oldest rows as (seq, JSON array, events), in order, holding about
        ``max_events`` events (at least one row)."""
        out: list[tuple[int, bytes, int]] = []
        total = 0
        with self._lock:
            for seq, body, events in self.db.execute("SELECT seq, body, events FROM outbox ORDER BY seq LIMIT ?", (max_events,)):
                out.append((int(seq), bytes(body), int(events)))
                total += int(events)
                if total >= max_events:
                    break
        return out

    def outbox_delete_through(self, seq: int) -> int:
        """Delete rows up to ``seq`` (after their PubAck); returns the rows deleted."""
        with self._lock:
            deleted = self.db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
            self.published_since_checkpoint += deleted
            return deleted

    def checkpoint_published(self) -> bool:
        """Once published events are deleted and the outbox is empty, truncate the WAL:
        the deleted rows' old pages (visitor events, identify traits) then exist nowhere
        on disk (``secure_delete`` zeroes them in the database file). True when done."""
        with self._lock:
            if not self.published_since_checkpoint or self.db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone():
                return False
            busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                self.published_since_checkpoint = 0
            return not busy

    def outbox_depth(self) -> int:
        """Events waiting in the outbox."""
        with self._lock:
            return int(self.db.execute("SELECT coalesce(sum(events), 0) FROM outbox").fetchone()[0])

    # ------------------------------------------------------------------ profiles
    def profile_cursor(self) -> int:
        """The last profiles-stream sequence applied (0: none)."""
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE name = 'profiles_seq'").fetchone()
        return int(row[0]) if row else 0

    def apply_profiles(self, changes: list[tuple[str, str | None, int]]) -> None:
        """(subject, JSON or None for a purge, stream sequence) in one transaction."""
        if not changes:
            return
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                for subject, data, _ in changes:
                    if data is None or self._is_erased(subject):
                        db.execute("DELETE FROM profiles WHERE subject = ?", (subject,))
                    else:
                        db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?)", (subject, data))
                db.execute(
                    "INSERT INTO meta VALUES ('profiles_seq', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (changes[-1][2],),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get_profile(self, subject: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT data FROM profiles WHERE subject = ?", (subject,)).fetchone()
        return json.loads(row[0]) if row else None

    def profile_count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM profiles").fetchone()[0])

    # ------------------------------------------------------------------ sessions
    def get_session(self, visitor_id: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT data FROM sessions WHERE visitor_id = ? AND expires > ?", (visitor_id, now)).fetchone()
        return json.loads(row[0]) if row else None

    def put_sessions(self, rows: list[tuple[str, str, float]]) -> None:
        """(visitor id, JSON, expires) rows in one transaction."""
        with self._lock:
            if self.suppressed:  # a flush racing an erasure never writes the session back
                rows = [r for r in rows if not self._is_erased(r[0])]
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")

    def purge_expired_sessions(self, now: float, batch: int = PURGE_BATCH) -> int:
        """Delete expired sessions, ``batch`` rows per statement with the lock released in
        between, so a page reading a session waits for one batch, not for the whole purge
        (100,000 sessions expiring together held it ~0.4 s: tests/bench/session_purge.py);
        ``batch=0``: one statement."""
        if batch <= 0:
            with self._lock:
                return int(self.db.execute("DELETE FROM sessions WHERE expires <= ?", (now,)).rowcount)
        total = 0
        while True:
            with self._lock:
                n = self.db.execute(
                    "DELETE FROM sessions WHERE visitor_id IN (SELECT visitor_id FROM sessions WHERE expires <= ? LIMIT ?)",
                    (now, batch),
                ).rowcount
            total += n
            if n < batch:
                return total
            time.sleep(0)  # let a waiting reader take the lock (it is not fair by itself)

    def session_count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
