"""The pipeline over time, for the console's charts: every ``P13N_HUB_CONSOLE_SAMPLE_S``
the hub samples its counters (received, accepted, duplicates, dead letters), the
ingest consumer's backlog and the fleet (edges up and stale) into ``console.sqlite``,
and keeps 14 days. Rates are the differences between samples (a counter that went
down, after a restore, counts from zero)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

KEEP_S = 14 * 86400
COLUMNS = ("received", "accepted", "duplicates", "dead_letters", "pending", "edges_up", "edges_stale")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS samples (ts REAL PRIMARY KEY, {", ".join(c + " INTEGER" for c in COLUMNS)});
"""


class Series:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def record(self, values: dict[str, int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO samples VALUES (?, {', '.join('?' * len(COLUMNS))})",
                (now, *(int(values.get(c, 0)) for c in COLUMNS)),
            )
            self._db.execute("DELETE FROM samples WHERE ts < ?", (now - KEEP_S,))

    def window(self, seconds: float, now: float | None = None) -> list[dict[str, Any]]:
        """Samples of the last ``seconds``, oldest first, with the counters' increase
        since the sample before (``<counter>_delta``)."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                f"SELECT ts, {', '.join(COLUMNS)} FROM samples WHERE ts >= ? ORDER BY ts", (now - seconds,)
            ).fetchall()
        out: list[dict[str, Any]] = []
        previous: tuple[Any, ...] | None = None
        for row in rows:
            sample: dict[str, Any] = {"ts": row[0], **dict(zip(COLUMNS, row[1:], strict=True))}
            for i, name in enumerate(COLUMNS[:4], start=1):
                before = previous[i] if previous is not None else row[i]
                sample[name + "_delta"] = row[i] - before if row[i] >= before else row[i]
            out.append(sample)
            previous = row
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
