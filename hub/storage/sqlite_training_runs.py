"""The training-run ledger in the SQLite warehouse (see :class:`hub.storage.TrainingLedger`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hub.storage.interface import RunInProgress

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS training_runs (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_training_runs_started ON training_runs (started_at);
"""


class SqliteTrainingLedger:
    def __init__(self, storage: SqliteStore) -> None:
        self.storage = storage
        with storage.lock:
            storage.warehouse.executescript(_SCHEMA)

    def create(self, run: dict[str, Any]) -> None:
        with self.storage.lock:
            busy = self.storage.warehouse.execute("SELECT id FROM training_runs WHERE status = 'running' LIMIT 1").fetchone()
            if busy is not None:  # (one hub per SQLite store: a run left by a stopped hub was failed at its start)
                raise RunInProgress(busy[0])
            self.storage.warehouse.execute(
                "INSERT INTO training_runs VALUES (?, ?, ?, ?)",
                (run["id"], float(run["started_at"]), run["status"], json.dumps(run, sort_keys=True)),
            )

    def update(self, run_id: str, fields: dict[str, Any]) -> None:
        with self.storage.lock:
            db = self.storage.warehouse
            row = db.execute("SELECT doc FROM training_runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            doc = {**json.loads(row[0]), **fields}
            db.execute(
                "UPDATE training_runs SET status = ?, doc = ? WHERE id = ?",
                (doc["status"], json.dumps(doc, sort_keys=True), run_id),
            )

    def get(self, run_id: str) -> dict[str, Any] | None:
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            row = db.execute("SELECT doc FROM training_runs WHERE id = ?", (run_id,)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        db = self.storage.reader(self.storage.data_dir / "warehouse.sqlite")
        try:
            rows = db.execute("SELECT doc FROM training_runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        finally:
            db.close()
        return [json.loads(r[0]) for r in rows]

    def interrupted(self, now: float) -> list[str]:
        with self.storage.lock:
            ids = [r[0] for r in self.storage.warehouse.execute("SELECT id FROM training_runs WHERE status = 'running'")]
        for run_id in ids:
            self.update(run_id, {"status": "failed", "reason": "interrupted: the hub stopped during the run", "finished_at": now})
        return ids
