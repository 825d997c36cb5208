"""Batch preparation (decode, validate, normalize) off the writer's process.

The hub's ingest is CPU-bound Python; SQLite writes are a third of it. With
``P13N_HUB_INGEST_WORKERS`` ≥ 1, raw NATS payloads go to worker processes that return
ready rows, while the main process commits the previous batch: the two halves run on
different cores instead of sharing one GIL (threads were measured and do not help:
docs/PERFORMANCE.md). Workers hold no state and touch no database; suppression of
erased subjects is applied by the writer at commit.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import multiprocessing.util
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import orjson

from hub.ingest.storage import PreparedBatch, prepare_batch
from models.process import die_with_parent

#: Marks a batch prepared without the live suppression list (the writer re-checks it).
UNKNOWN_SUPPRESSION = -1


def events_of(data: bytes) -> list[object] | None:
    """The events of one NATS message (a JSON array), or None when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, list) else None


def prepare_payloads(payloads: list[bytes], received_at: str) -> tuple[PreparedBatch, list[bytes]]:
    """(prepared batch, payloads that were not JSON arrays of events)."""
    events: list[object] = []
    malformed: list[bytes] = []
    for data in payloads:
        batch = events_of(data)
        if batch is None:
            malformed.append(data)
        else:
            events.extend(batch)
    return prepare_batch(events, "nats", received_at, False, UNKNOWN_SUPPRESSION, None), malformed


class Preparer:
    """Runs :func:`prepare_payloads` in ``workers`` processes (0: in this process)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
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

    async def prepare(self, payloads: list[bytes], received_at: str) -> tuple[PreparedBatch, list[bytes]]:
        if self.workers <= 0:
            return await asyncio.to_thread(prepare_payloads, payloads, received_at)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), prepare_payloads, payloads, received_at)
        except BrokenProcessPool:  # a worker died (OOM killer…): start a fresh pool next time
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            _terminate_children()


def _terminate_children() -> None:
    for child in multiprocessing.active_children():
        child.terminate()
