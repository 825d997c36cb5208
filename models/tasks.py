"""Stopping background tasks for sure, within a bound.

One ``Task.cancel()`` is not enough to stop a loop on Python 3.11: when the awaited
inner future completes in the same loop iteration as the cancellation,
``asyncio.wait_for`` returns the result and the ``CancelledError`` is lost (fixed in
3.12, gh-86296). Clients that wrap ``wait_for`` — the NATS pull fetch does, on every
call — then keep running, and a server waiting for them at shutdown never exits (seen:
a hub that hung at stop about one time in ten under CPU load).

Two defences, used together: long-running loops call :func:`checkpoint` once per
turn, which ends the turn when a cancellation is pending (``Task.cancelling()`` still
counts a swallowed one); and :func:`stop_tasks` cancels again, at most every
:data:`RECANCEL_S`, a task that is still running, and gives up after ``grace_s``,
naming what it left behind, so a stop always ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

#: How long a cancelled task may run (its cleanup, say) before it is cancelled again.
RECANCEL_S = 1.0


def checkpoint() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop — even when
    the cancellation was lost inside ``asyncio.wait_for``."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], grace_s: float = 10.0, log: logging.Logger | None = None) -> list[str]:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each
    :data:`RECANCEL_S` a task is still running. Returns the names of the tasks still
    running after ``grace_s`` (logged as a warning). A task that had failed is logged
    with its exception, not raised: the stop goes on."""
    tasks = list(tasks)
    logger = log or logging.getLogger(__name__)
    left = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + grace_s
    while left:
        for task in left:
            task.cancel()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        _, left = await asyncio.wait(left, timeout=min(RECANCEL_S, remaining))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.warning("task %s had failed before it was stopped", task.get_name(), exc_info=task.exception())
    names = sorted(t.get_name() for t in left)
    if names:
        logger.warning(
            "%d tasks still running %.0f s after being cancelled, left behind: %s", len(names), grace_s, ", ".join(names)
        )
    return names
