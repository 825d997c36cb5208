"""The erasure ledger in the SQLite warehouse (see :class:`hub.storage.ErasureLedger`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from models.erasure import ErasureOrder

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS erasures (
    request_id TEXT PRIMARY KEY,
    tokens TEXT NOT NULL,
    requested_at REAL NOT NULL,
    requested_by TEXT NOT NULL,
    edges TEXT NOT NULL,
    hub TEXT NOT NULL,
    completed_at REAL,
    work TEXT,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS erasure_acks (
    request_id TEXT NOT NULL,
    edge_id TEXT NOT NULL,
    acked_at REAL NOT NULL,
    deleted TEXT NOT NULL,
    PRIMARY KEY (request_id, edge_id)
);
"""


class SqliteErasureLedger:
    """The ``erasures`` and ``erasure_acks`` tables of the warehouse."""

    def __init__(self, storage: SqliteStore) -> None:
        self.storage = storage
        with storage.lock:
            db = storage.warehouse
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(erasures)")}
            if "work" not in columns:  # tables from before resumable erasures
                db.execute("ALTER TABLE erasures ADD COLUMN work TEXT")
                db.execute("ALTER TABLE erasures ADD COLUMN published INTEGER NOT NULL DEFAULT 1")

    def create(self, order: ErasureOrder, requested_by: str, edges: list[str], work: str) -> None:
        """Record the request before any deletion: ``work`` (the subject's identifiers,
        encrypted) lets a restarted hub finish the hub-side deletion; it is wiped when
        that is done."""
        with self.storage.lock:
            self.storage.warehouse.execute(
                "INSERT INTO erasures VALUES (?, ?, ?, ?, ?, '{}', ?, ?, 0)", erasure_row(order, requested_by, edges, work)
            )

    def hub_done(self, request_id: str, hub: dict[str, Any]) -> None:
        with self.storage.lock:
            db = self.storage.warehouse
            db.execute(
                "UPDATE erasures SET hub = ?, work = NULL WHERE request_id = ?", (json.dumps(hub, sort_keys=True), request_id)
            )
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the encrypted identifiers leave the WAL too

    def mark_published(self, request_id: str) -> None:
        with self.storage.lock:
            self.storage.warehouse.execute("UPDATE erasures SET published = 1 WHERE request_id = ?", (request_id,))

    def pending_work(self) -> list[tuple[str, str]]:
        """(request id, encrypted identifiers) of requests whose hub-side deletion is unfinished."""
        with self.storage.lock:
            return [
                (r[0], r[1])
                for r in self.storage.warehouse.execute("SELECT request_id, work FROM erasures WHERE work IS NOT NULL")
            ]

    def unpublished(self) -> list[ErasureOrder]:
        """Orders of requests done at the hub but not yet published to the edges."""
        with self.storage.lock:
            rows = self.storage.warehouse.execute(
                "SELECT request_id, tokens, requested_at FROM erasures WHERE published = 0 AND work IS NULL ORDER BY requested_at"
            ).fetchall()
        return [ErasureOrder(r[0], tuple(json.loads(r[1])), float(r[2])) for r in rows]

    def ack(self, request_id: str, edge_id: str, deleted: dict[str, int], now: float) -> bool:
        """Record an edge's acknowledgement; True when it completes the request."""
        with self.storage.lock:
            db = self.storage.warehouse
            db.execute("INSERT OR IGNORE INTO erasure_acks VALUES (?, ?, ?, ?)", (request_id, edge_id, now, json.dumps(deleted)))
            return self._maybe_complete(db, request_id, now)

    def _maybe_complete(self, db: sqlite3.Connection, request_id: str, now: float) -> bool:
        row = db.execute("SELECT edges, completed_at FROM erasures WHERE request_id = ?", (request_id,)).fetchone()
        if row is None or row[1] is not None:
            return False
        expected = set(json.loads(row[0]))
        acked = {r[0] for r in db.execute("SELECT edge_id FROM erasure_acks WHERE request_id = ?", (request_id,))}
        if expected <= acked:
            db.execute("UPDATE erasures SET completed_at = ? WHERE request_id = ?", (now, request_id))
            return True
        return False

    def forget_edge(self, edge_id: str, now: float) -> list[str]:
        """A deregistered edge no longer holds up pending requests; returns those completed."""
        completed = []
        with self.storage.lock:
            db = self.storage.warehouse
            for request_id, edges in db.execute("SELECT request_id, edges FROM erasures WHERE completed_at IS NULL").fetchall():
                expected = json.loads(edges)
                if edge_id in expected:
                    expected.remove(edge_id)
                    db.execute("UPDATE erasures SET edges = ? WHERE request_id = ?", (json.dumps(expected), request_id))
                    if self._maybe_complete(db, request_id, now):
                        completed.append(request_id)
        return completed

    def pending_count(self) -> int:
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            return int(db.execute("SELECT count(*) FROM erasures WHERE completed_at IS NULL").fetchone()[0])
        finally:
            db.close()

    def oldest_pending(self) -> float | None:
        """When the oldest request not yet complete was made (Unix time; None: none)."""
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            value = db.execute("SELECT min(requested_at) FROM erasures WHERE completed_at IS NULL").fetchone()[0]
            return float(value) if value is not None else None
        finally:
            db.close()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest requests, newest first, each with its status and edge acks."""
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            ids = [r[0] for r in db.execute("SELECT request_id FROM erasures ORDER BY requested_at DESC LIMIT ?", (limit,))]
        finally:
            db.close()
        return [s for s in (self.status(i) for i in ids) if s is not None]

    def status(self, request_id: str) -> dict[str, Any] | None:
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            row = db.execute(
                "SELECT request_id, requested_at, requested_by, edges, hub, completed_at FROM erasures WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                return None
            acks = db.execute(
                "SELECT edge_id, acked_at, deleted FROM erasure_acks WHERE request_id = ?", (request_id,)
            ).fetchall()
        finally:
            db.close()
        return status_of(row, acks)


def erasure_row(order: ErasureOrder, requested_by: str, edges: list[str], work: str) -> tuple[Any, ...]:
    """A new request's row (the ``erasures`` columns but ``hub`` and ``published``):
    complete at once when no edge has to acknowledge it."""
    return (
        order.request_id,
        json.dumps(list(order.tokens)),
        order.issued_at,
        requested_by,
        json.dumps(sorted(edges)),
        order.issued_at if not edges else None,
        work,
    )


def status_of(row: Sequence[Any], ack_rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """A request's status from its row (id, requested at, by, edges, hub, completed at)
    and its (edge, acked at, deleted) acknowledgements."""
    acks = {e: {"acked_at": a, "deleted": json.loads(d)} for e, a, d in ack_rows}
    edges = {e: {"status": "acknowledged", **acks[e]} if e in acks else {"status": "pending"} for e in json.loads(row[3])}
    completed = row[5]
    return {
        "request_id": row[0],
        "status": "completed" if completed is not None else "pending",
        "requested_at": row[1],
        "requested_by": row[2],
        "completed_at": completed,
        "completion_s": round(completed - row[1], 3) if completed is not None else None,
        "hub": json.loads(row[4]),
        "edges": edges,
    }
