"""Group commit for the outbox: concurrent requests share one SQLite transaction.

Each ``write`` queues its rows and waits; one writer task takes everything queued,
commits it on a worker thread, then releases every waiter. Under load N requests cost
one commit and one thread hop instead of N (measured in docs/PERFORMANCE.md); an
answer still goes out only after its rows are committed.

With several worker processes the same transaction also writes the sessions the
batch's requests changed (edge_agent/session_sync.py): ``take`` collects them on the
event loop before the commit, the commit receives what it took, and ``settle`` gets
the commit's result back on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from models.tasks import stop_tasks

Row = tuple[str, str, bytes, int]


class GroupCommitter:
    def __init__(
        self,
        commit: Callable[[list[Row], float, Any], Any],
        take: Callable[[], Any] = lambda: None,
        settle: Callable[[Any], None] = lambda _: None,
    ) -> None:
        """Each batch: ``settle(commit(rows, now, take()))``, ``commit`` on a worker thread."""
        self._commit = commit
        self._take = take
        self._settle = settle
        self._queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-outbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError("outbox writer stopped"))

    async def write(self, rows: list[Row]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            rows = [r for rows, _ in batch for r in rows]
            try:
                self._settle(await asyncio.to_thread(self._commit, rows, time.time(), self._take()))
            except Exception as e:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
