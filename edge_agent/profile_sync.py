"""Consented profiles from the hub: follow the KV bucket's stream, resume where we were.

nats-py's ``KeyValue.watch`` cannot resume from a revision, so the edge reads the
bucket's own stream (``$KV.p13n_profiles.>``) with an ordered consumer starting at the
last applied stream sequence + 1 (kept in SQLite): after a disconnect or a restart it
catches up on what changed, not on everything. ``PURGE``/``DEL`` operations delete the
local copy.
"""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from edge_agent.nats_loop import while_connected
from edge_agent.state import EdgeState
from models import nats_layout as L

log = logging.getLogger(__name__)
_PREFIX = f"$KV.{L.PROFILES_BUCKET}."
#: Most profile changes applied in one SQLite transaction while catching up.
APPLY_BATCH = 2000


async def follow_profiles(state: EdgeState) -> None:
    """Apply profile changes forever (whenever the NATS connection is up)."""

    async def body(nc: NATS) -> None:
        js = nc.jetstream()
        start = await asyncio.to_thread(state.store.profile_cursor)
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start + 1)
            if start
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        sub = await js.subscribe(f"{_PREFIX}>", stream=f"KV_{L.PROFILES_BUCKET}", ordered_consumer=True, config=config)
        batch: list[tuple[str, str | None, int]] = []
        async for msg in sub.messages:
            subject = msg.subject[len(_PREFIX) :]
            op = (msg.headers or {}).get("KV-Operation", "")
            seq = msg.metadata.sequence.stream
            if op in ("DEL", "PURGE"):
                batch.append((subject, None, seq))
            else:
                try:
                    batch.append((subject, json.dumps(json.loads(msg.data)), seq))
                except ValueError:
                    continue
            # catching up: apply many per transaction; live: apply at once
            if sub.pending_msgs == 0 or len(batch) >= APPLY_BATCH:
                await asyncio.to_thread(state.store.apply_profiles, batch)
                for changed, _, _ in batch:
                    state.profiles_cache.pop(changed, None)
                state.metrics.profiles_applied.inc(len(batch))
                batch = []

    def on_error(message: str) -> None:
        state.last_error = f"profiles: {message}"

    await while_connected(state, body, on_error)
