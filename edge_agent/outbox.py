"""Drain the SQLite outbox into JetStream: many events per message, deleted after ack.

Each outbox row is one request's events (a JSON array); a message splices rows into
one array of about ``publish_batch`` events, with
``Nats-Msg-Id = <edge>:<first seq>-<last seq>`` so a republish after a crash is
dropped by the stream's duplicate window; the hub also deduplicates on event ids. Rows
are deleted only after the PubAck. NATS outages and agent restarts lose nothing:
the loop reconnects with backoff and jitter and resumes from the oldest row.
"""

from __future__ import annotations

import asyncio
import logging
import random

import nats
from nats.aio.client import Client as NATS

from edge_agent.state import EdgeState
from models.nats_layout import edge_inbox_prefix as inbox_prefix
from models.nats_layout import events_subject
from models.nats_log import ConnectionLog
from models.tasks import checkpoint
from models.tls import client_context

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 15.0
_other_workers = logging.getLogger("edge_agent.outbox.other_workers")
_other_workers.setLevel(logging.ERROR)
IDLE_WAIT_S = 1.0


async def connect(state: EdgeState) -> NATS:
    """Connect to NATS, retrying forever with backoff and jitter."""
    delay = 0.2
    # with several workers the owner speaks for the edge; the others' lines would repeat it
    quiet = ConnectionLog(log if state.owner else _other_workers, f"edge {state.settings.edge_id}")
    while True:
        try:
            nc = await nats.connect(
                state.settings.nats_url.split(","),
                name=f"p13n-edge-{state.settings.edge_id}",
                inbox_prefix=inbox_prefix(state.settings.edge_id),
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                tls=client_context(state.settings.nats_ca),
                **quiet.callbacks(),
            )
            quiet.client = nc
            quiet.connected()
            state.nats_connected = True
            state.last_error = ""
            return nc
        except asyncio.CancelledError:
            raise
        except Exception as e:
            state.last_error = f"nats: {type(e).__name__}: {e}"[:300]
            state.metrics.publish_failures.inc()
            quiet.failed(e)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF_S)


async def publish_loop(state: EdgeState) -> None:
    """Background task: forever drain the outbox in order."""
    nc = await connect(state)
    state.nc = nc
    await state.become_owner()  # every worker connects; one publishes the shared outbox
    js = nc.jetstream()
    subject = events_subject(state.settings.edge_id)
    failing = ConnectionLog(log, f"edge {state.settings.edge_id} publishing events")
    delay = 0.2
    while True:
        checkpoint()
        rows = await asyncio.to_thread(state.store.outbox_batch, state.settings.publish_batch)
        if not rows:
            state.outbox_wakeup.clear()
            try:
                await asyncio.wait_for(state.outbox_wakeup.wait(), IDLE_WAIT_S)
            except TimeoutError:
                pass
            continue
        first, last = rows[0][0], rows[-1][0]
        # rows are JSON arrays: splice their elements into one array
        payload = b"[" + b",".join(body[1:-1] for _, body, _ in rows) + b"]"
        count = sum(n for _, _, n in rows)
        try:
            await js.publish(subject, payload, timeout=5, headers={"Nats-Msg-Id": f"{state.settings.edge_id}:{first}-{last}"})
        except asyncio.CancelledError:
            raise
        except Exception as e:
            state.metrics.publish_failures.inc()
            state.last_error = f"publish: {type(e).__name__}: {e}"[:300]
            failing.failed(e)  # one line per streak, then a summary a minute
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF_S)
            continue
        failing.connected()
        state.recovered("publish")
        delay = 0.2
        await asyncio.to_thread(state.store.outbox_delete_through, last)
        if state.coherence is not None:
            state.outbox_depth = state.coherence.add_outbox(-count)
        else:
            state.outbox_depth = max(0, state.outbox_depth - count)
        state.metrics.published.inc(count)
