"""Consented profiles from the hub: read the KV bucket's stream from where we were.

The edge reads the bucket's stream (``$KV.p13n_profiles.>``) with batched direct gets
from the last applied stream sequence + 1 (kept in SQLite with the profiles, in one
transaction), so after a disconnect or a restart it catches up on what changed, not
on everything; a lost data directory simply reads from the start. A core
subscription on the bucket's subjects only wakes the reader when the hub writes (so a
change is applied within milliseconds); a slow poll covers wake-ups missed while
disconnected. ``PURGE``/``DEL`` operations delete the local copy. Direct gets are
read-only: an edge holds no consumer on the bucket (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from edge_agent.js_read import MAX_BATCH, read_batch
from edge_agent.nats_loop import while_connected
from edge_agent.state import EdgeState
from edge_agent.worker_epoch import sync_workers
from models import nats_layout as L
from models.tasks import checkpoint

log = logging.getLogger(__name__)
_PREFIX = f"$KV.{L.PROFILES_BUCKET}."
_STREAM = f"KV_{L.PROFILES_BUCKET}"
#: Seconds between reads when no change notification arrives.
POLL_S = 5.0


def stored_at(stamp: str) -> float | None:
    """The server's store time of a message (``Nats-Time-Stamp``, RFC 3339 with up to
    nanoseconds) as a Unix time; None when absent or unreadable."""
    if not stamp:
        return None
    head, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        whole = datetime.fromisoformat(head).replace(tzinfo=UTC)
        return whole.timestamp() + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)
    except ValueError:
        return None


async def catch_up(state: EdgeState, nc: NATS) -> int:
    """Apply every change after the local cursor; returns how many were applied."""
    applied = 0
    while True:
        start = await asyncio.to_thread(state.store.profile_cursor)
        msgs, pending = await read_batch(nc, _STREAM, start + 1, f"{_PREFIX}>", MAX_BATCH)
        if not msgs:
            return applied
        batch: list[tuple[str, str | None, int]] = []
        for msg in msgs:
            subject = msg.subject[len(_PREFIX) :]
            value: str | None = None
            if msg.headers.get("KV-Operation", "") not in ("DEL", "PURGE"):
                try:
                    value = json.dumps(json.loads(msg.data))
                except ValueError:  # an unreadable value supersedes the old one: drop it
                    log.warning("profile at sequence %d is not JSON; the local copy is removed", msg.seq)
            batch.append((subject, value, msg.seq))
        await asyncio.to_thread(state.store.apply_profiles, batch)
        for changed, _, _ in batch:
            state.profiles_cache.pop(changed, None)
            if state.coherence is not None:  # the other workers read it again
                state.coherence.bump(changed)
        if any(value is None for _, value, _ in batch):
            if state.models is not None:
                state.models.forget()  # a purged profile's factors may key remembered answers
            await sync_workers(state)  # in every worker
        state.metrics.profiles_applied.inc(len(batch))
        now = time.time()
        for msg in msgs:
            stored = stored_at(msg.headers.get("Nats-Time-Stamp", ""))
            if stored is not None:
                state.metrics.profile_sync_delay.observe(max(0.0, now - stored))
        applied += len(batch)
        if not pending:
            return applied


async def follow_profiles(state: EdgeState) -> None:
    """Apply profile changes forever (whenever the NATS connection is up)."""

    async def body(nc: NATS) -> None:
        wake = asyncio.Event()

        async def on_change(_: Msg) -> None:
            wake.set()

        sub = await nc.subscribe(f"{_PREFIX}>", cb=on_change)
        try:
            while True:
                checkpoint()
                wake.clear()
                await catch_up(state, nc)
                state.recovered("profiles")
                try:
                    await asyncio.wait_for(wake.wait(), POLL_S)
                except TimeoutError:
                    pass
        finally:
            await sub.unsubscribe()

    def on_error(message: str) -> None:
        state.last_error = f"profiles: {message}"

    await while_connected(state, body, on_error)
