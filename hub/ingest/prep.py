"""Batch preparation (decode, validate, normalize) off the writer's process.

The hub's ingest is CPU-bound Python; SQLite writes are a third of it. With
``P13N_HUB_INGEST_WORKERS`` ≥ 1, raw NATS payloads go to worker processes that return
ready rows, while the main process commits the previous batch: the two halves run on
different cores instead of sharing one GIL (threads were measured and do not help:
docs/PERFORMANCE.md).

Workers also append the batch's raw events to the day's lake file before returning
it (``hub.storage.sqlite.append_lake``; a store without lake files runs them without a
lake directory and stores the lake rows at commit): the lake commits before the warehouse, as when the writer does both, so a crash in
between is still repaired by redelivery (the lake ignores a known event id). Workers
hold no other state and touch no other database. Suppression of erased subjects is
applied by the writer at commit, which also takes out of the lake the events of a
subject erased while their batch was being prepared.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import multiprocessing.util
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import orjson

from hub.ingest.batch import PreparedBatch, prepare_batch
from hub.pii import PiiCipher
from hub.storage.sqlite import append_lake
from models.process import die_with_parent

#: Seconds a stopping hub lets a worker finish the batch it is preparing.
CLOSE_GRACE_S = 2.0
#: Marks a batch prepared without the live suppression list (the writer re-checks it).
UNKNOWN_SUPPRESSION = -1


def events_of(data: bytes) -> list[object] | None:
    """The events of one NATS message (a JSON array), or None when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, list) else None


#: This worker's cipher, rebuilt only when the key ring changes.
_CIPHER: tuple[tuple[tuple[str, bytes], ...], PiiCipher] | None = None


def _cipher(ring: list[tuple[str, bytes]] | None) -> PiiCipher | None:
    global _CIPHER
    if not ring:
        return None
    key = tuple(ring)
    if _CIPHER is None or _CIPHER[0] != key:
        _CIPHER = (key, PiiCipher(list(ring)))
    return _CIPHER[1]


def prepare_payloads(
    payloads: list[bytes],
    received_at: str,
    lake_dir: Path | None = None,
    edges: list[str] | None = None,
    ring: list[tuple[str, bytes]] | None = None,
) -> tuple[PreparedBatch, list[bytes]]:
    """(prepared batch, payloads that were not JSON arrays of events). ``edges`` names
    the edge of each payload (from its NATS subject, which only that edge may publish
    on): it replaces whatever edge the events claim. With ``lake_dir`` the batch's lake
    rows are written here and listed in ``lake_written``."""
    events: list[object] = []
    malformed: list[bytes] = []
    for index, data in enumerate(payloads):
        batch = events_of(data)
        if batch is None:
            malformed.append(data)
            continue
        if edges is not None:
            for event in batch:
                if isinstance(event, dict):
                    event["edge"] = edges[index]
        events.extend(batch)
    prepared = prepare_batch(events, "nats", received_at, False, UNKNOWN_SUPPRESSION, None, _cipher(ring))
    if lake_dir is not None:
        for day, rows in prepared.lake.items():
            append_lake(lake_dir, day, rows)
            prepared.lake_written[day] = [r[0] for r in rows]
        prepared.lake = {}
    return prepared, malformed


class Preparer:
    """Runs :func:`prepare_payloads` in ``workers`` processes (0: in this process, and
    the writer stores the lake rows). With workers, ``lake_dir`` is where they append
    the lake rows."""

    def __init__(self, workers: int, lake_dir: Path | None = None, ring: list[tuple[str, bytes]] | None = None) -> None:
        self.workers = workers
        self.lake_dir = lake_dir
        #: The PII key ring the workers seal personal data with (hub.personal).
        self.ring = ring
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the hub has threads (NATS, SQLite) a fork would copy mid-flight
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
            # however the hub exits (even without its shutdown running), the workers go:
            # the server runs us in a multiprocessing child, whose exit joins every child
            # process after running these finalizers (atexit hooks do not run there)
            multiprocessing.util.Finalize(self, _terminate_children, exitpriority=10)
            atexit.register(_terminate_children)
        return self._pool

    async def prepare(
        self, payloads: list[bytes], received_at: str, edges: list[str] | None = None
    ) -> tuple[PreparedBatch, list[bytes]]:
        if self.workers <= 0:
            return await asyncio.to_thread(prepare_payloads, payloads, received_at, None, edges, self.ring)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor(), prepare_payloads, payloads, received_at, self.lake_dir, edges, self.ring
            )
        except BrokenProcessPool:  # a worker died (OOM killer…): start a fresh pool next time
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers: queued batches are cancelled, a batch being prepared may
        finish (at most :data:`CLOSE_GRACE_S`), then whatever is left is terminated.
        Terminating a worker while it writes its result leaves half a message in the
        pool's pipe, and the pool's manager thread then blocks at interpreter exit
        forever (seen: a hub worker that never exited) — hence the grace first."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            deadline = time.monotonic() + CLOSE_GRACE_S
            for child in multiprocessing.active_children():
                child.join(max(0.0, deadline - time.monotonic()))
            _terminate_children()


def _terminate_children() -> None:
    for child in multiprocessing.active_children():
        child.terminate()
