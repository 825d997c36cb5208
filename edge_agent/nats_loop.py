"""Run a NATS-dependent loop whenever the connection is up, backing off on failure.

The outbox publisher owns the connection; the bundle watcher and the profile follower
run their bodies through :func:`while_connected`, which waits for the connection,
restarts a body that failed with exponential backoff and jitter, and reports the
failure through ``on_error`` (the page path never waits on any of it).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS

from edge_agent.state import EdgeState
from models.tasks import checkpoint

MAX_BACKOFF_S = 15.0


async def while_connected(state: EdgeState, body: Callable[[NATS], Awaitable[None]], on_error: Callable[[str], None]) -> None:
    delay = 0.5
    while True:
        checkpoint()
        nc = state.nc
        if nc is None or not nc.is_connected:
            await asyncio.sleep(0.2)
            continue
        try:
            await body(nc)
            delay = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as e:  # NATS away, bucket missing…: keep serving, retry
            on_error(f"{type(e).__name__}: {e}"[:300])
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF_S)
