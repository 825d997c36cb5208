"""The erasure and training-run ledgers in PostgreSQL (see ``sqlite_erasures`` and
``sqlite_training_runs``; the same tables, records and answers).

Several hub processes share these ledgers. Acknowledgements from two edges completing
one request at once are serialized by locking the request's row, so it completes
exactly once. A training run records its owner (the store that created it, alive as
long as its session advisory lock is held: hub/storage/postgres.py): a starting hub
marks failed only the runs whose owner is gone, never another live hub's run.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hub.storage.interface import RunInProgress
from hub.storage.sqlite_erasures import erasure_row, status_of
from models.erasure import ErasureOrder

if TYPE_CHECKING:
    import psycopg

    from hub.storage.postgres import PostgresStore

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS erasures (request_id text PRIMARY KEY, tokens text NOT NULL, requested_at float8 NOT NULL, "
    "requested_by text NOT NULL, edges text NOT NULL, hub text NOT NULL, completed_at float8, work text, "
    "published integer NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS erasure_acks (request_id text NOT NULL, edge_id text NOT NULL, acked_at float8 NOT NULL, "
    "deleted text NOT NULL, PRIMARY KEY (request_id, edge_id))",
    "CREATE TABLE IF NOT EXISTS training_runs (id text PRIMARY KEY, started_at float8 NOT NULL, status text NOT NULL, "
    "doc text NOT NULL, owner bigint NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS idx_training_runs_started ON training_runs (started_at)",
)


#: The run's owner (a hub process's store) still holds its session lock: it is alive.
_OWNER_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND ((l.classid::bigint << 32) | l.objid::bigint) = t.owner)"
)
#: Serializes the creation of training runs across hub processes.
TRAINING_LOCK = 0x7031336E04


class PostgresErasureLedger:
    def __init__(self, storage: PostgresStore) -> None:
        self.storage = storage

    def create(self, order: ErasureOrder, requested_by: str, edges: list[str], work: str) -> None:
        with self.storage.writing() as db:
            db.execute(
                "INSERT INTO erasures VALUES (%s, %s, %s, %s, %s, '{}', %s, %s, 0)", erasure_row(order, requested_by, edges, work)
            )

    def hub_done(self, request_id: str, hub: dict[str, Any]) -> None:
        with self.storage.writing() as db:
            db.execute(
                "UPDATE erasures SET hub = %s, work = NULL WHERE request_id = %s", (json.dumps(hub, sort_keys=True), request_id)
            )

    def mark_published(self, request_id: str) -> None:
        with self.storage.writing() as db:
            db.execute("UPDATE erasures SET published = 1 WHERE request_id = %s", (request_id,))

    def pending_work(self) -> list[tuple[str, str]]:
        with self.storage.reading() as db:
            return [(r[0], r[1]) for r in db.execute("SELECT request_id, work FROM erasures WHERE work IS NOT NULL").fetchall()]

    def unpublished(self) -> list[ErasureOrder]:
        with self.storage.reading() as db:
            rows = db.execute(
                "SELECT request_id, tokens, requested_at FROM erasures WHERE published = 0 AND work IS NULL ORDER BY requested_at"
            ).fetchall()
        return [ErasureOrder(r[0], tuple(json.loads(r[1])), float(r[2])) for r in rows]

    def ack(self, request_id: str, edge_id: str, deleted: dict[str, int], now: float) -> bool:
        with self.storage.writing() as db:
            db.execute(
                "INSERT INTO erasure_acks VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (request_id, edge_id, now, json.dumps(deleted)),
            )
            return self._maybe_complete(db, request_id, now)

    def _maybe_complete(self, db: psycopg.Connection[Any], request_id: str, now: float) -> bool:
        row = db.execute("SELECT edges, completed_at FROM erasures WHERE request_id = %s FOR UPDATE", (request_id,)).fetchone()
        if row is None or row[1] is not None:
            return False
        expected = set(json.loads(row[0]))
        acked = {r[0] for r in db.execute("SELECT edge_id FROM erasure_acks WHERE request_id = %s", (request_id,)).fetchall()}
        if expected <= acked:
            db.execute("UPDATE erasures SET completed_at = %s WHERE request_id = %s", (now, request_id))
            return True
        return False

    def forget_edge(self, edge_id: str, now: float) -> list[str]:
        completed = []
        with self.storage.writing() as db:
            rows = db.execute(
                "SELECT request_id, edges FROM erasures WHERE completed_at IS NULL ORDER BY request_id FOR UPDATE"
            ).fetchall()
            for request_id, edges in rows:
                expected = json.loads(edges)
                if edge_id in expected:
                    expected.remove(edge_id)
                    db.execute("UPDATE erasures SET edges = %s WHERE request_id = %s", (json.dumps(expected), request_id))
                    if self._maybe_complete(db, request_id, now):
                        completed.append(request_id)
        return completed

    def pending_count(self) -> int:
        with self.storage.reading() as db:
            row = db.execute("SELECT count(*) FROM erasures WHERE completed_at IS NULL").fetchone()
        return int(row[0]) if row else 0

    def oldest_pending(self) -> float | None:
        with self.storage.reading() as db:
            row = db.execute("SELECT min(requested_at) FROM erasures WHERE completed_at IS NULL").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.storage.reading() as db:
            ids = [r[0] for r in db.execute("SELECT request_id FROM erasures ORDER BY requested_at DESC LIMIT %s", (limit,))]
        return [s for s in (self.status(i) for i in ids) if s is not None]

    def status(self, request_id: str) -> dict[str, Any] | None:
        with self.storage.reading() as db:
            row = db.execute(
                "SELECT request_id, requested_at, requested_by, edges, hub, completed_at FROM erasures WHERE request_id = %s",
                (request_id,),
            ).fetchone()
            if row is None:
                return None
            acks = db.execute(
                "SELECT edge_id, acked_at, deleted FROM erasure_acks WHERE request_id = %s", (request_id,)
            ).fetchall()
        return status_of(row, acks)


class PostgresTrainingLedger:
    def __init__(self, storage: PostgresStore) -> None:
        self.storage = storage

    def create(self, run: dict[str, Any]) -> None:
        """Record a run, unless a live hub process is running one (one run at a time
        across the hubs: two would race for the next bundle version)."""
        with self.storage.writing() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (TRAINING_LOCK,))
            busy = db.execute(f"SELECT id FROM training_runs t WHERE status = 'running' AND {_OWNER_ALIVE} LIMIT 1").fetchone()
            if busy is not None:
                raise RunInProgress(busy[0])
            db.execute(
                "INSERT INTO training_runs VALUES (%s, %s, %s, %s, %s)",
                (run["id"], float(run["started_at"]), run["status"], json.dumps(run, sort_keys=True), self.storage.owner),
            )

    def update(self, run_id: str, fields: dict[str, Any]) -> None:
        with self.storage.writing() as db:
            row = db.execute("SELECT doc FROM training_runs WHERE id = %s FOR UPDATE", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            doc = {**json.loads(row[0]), **fields}
            db.execute(
                "UPDATE training_runs SET status = %s, doc = %s WHERE id = %s",
                (doc["status"], json.dumps(doc, sort_keys=True), run_id),
            )

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self.storage.reading() as db:
            row = db.execute("SELECT doc FROM training_runs WHERE id = %s", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self.storage.reading() as db:
            rows = db.execute("SELECT doc FROM training_runs ORDER BY started_at DESC LIMIT %s", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def interrupted(self, now: float) -> list[str]:
        """Runs left ``running`` by a hub process that is gone (its owner lock is free)."""
        with self.storage.reading() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM training_runs t WHERE status = 'running' AND NOT {_OWNER_ALIVE} ORDER BY started_at"
                ).fetchall()
            ]
        for run_id in ids:
            self.update(run_id, {"status": "failed", "reason": "interrupted: the hub stopped during the run", "finished_at": now})
        return ids
