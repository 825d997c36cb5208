"""Apply the hub's erasure orders and acknowledge them.

The edge reads ``P13N_ERASURE`` through its own durable consumer ``erasure-<edge>``,
which the hub creates when it first hears the edge's heartbeat (that is what registers
the edge for erasures; an edge may not create consumers itself: docs/SECURITY.md), so
an order published while the edge was offline is delivered when it reconnects. Applying an
order: its tokens join the suppression list (late events of the subject are refused
from then on), the subject's live sessions and cached profiles leave memory, events
already accepted are committed (a barrier on the outbox writer) and then deleted with
the subject's sessions and profiles from SQLite (with several worker processes, every
worker drops the subject first: edge_agent/worker_epoch.py). Only then is the acknowledgement
published (with JetStream's ack, so it is stored) and the order acked: a crash in
between applies the order again, which is harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from nats.aio.client import Client as NATS
from nats.js.errors import FetchTimeoutError

from edge_agent.nats_loop import while_connected
from edge_agent.state import EdgeState
from edge_agent.worker_epoch import sync_workers
from models import nats_layout as L
from models.erasure import ErasureOrder, ack_doc
from models.tasks import checkpoint

log = logging.getLogger(__name__)

#: The fetch long-polls this many seconds. One order per fetch: nats-py's multi-message
#: fetch holds the first message until the batch fills or the wait ends (up to 5 s of
#: latency, measured in tests/bench/erasure.py); a single-message fetch returns at once.
FETCH_WAIT_S = 5.0


async def apply_order(state: EdgeState, order: ErasureOrder) -> dict[str, int]:
    tokens = set(order.tokens)
    tokenizer = state.store.tokenizer
    assert tokenizer is not None
    state.store.suppressed.update(tokens)  # from now on no event of the subject is accepted
    in_memory = state.forget_subjects(lambda vid: tokenizer(vid) in tokens)
    if state.coherence is not None:  # and in no other worker (edge_agent/worker_epoch.py)
        await asyncio.to_thread(state.store.suppress, sorted(tokens), time.time())
        await sync_workers(state)
    await state.outbox_writer.write([])  # barrier: events accepted before are committed
    deleted = await asyncio.to_thread(state.store.erase, order.request_id, sorted(tokens), time.time())
    await sync_workers(state)  # what a worker read before the deletion leaves its memory
    state.outbox_depth = await asyncio.to_thread(state.store.outbox_depth)  # rows left with the subject
    if state.coherence is not None:
        state.coherence.set_outbox(state.outbox_depth)
    deleted["sessions_in_memory"] = in_memory
    state.metrics.erasures_applied.inc()
    return deleted


async def follow_erasures(state: EdgeState) -> None:
    edge_id = state.settings.edge_id

    async def body(nc: NATS) -> None:
        js = nc.jetstream()
        # bound to the consumer the hub made for this edge; until it exists the fetch
        # fails and the loop retries with backoff
        sub = await js.pull_subscribe_bind(durable=L.erasure_consumer(edge_id), stream=L.ERASURE_STREAM)
        while True:
            checkpoint()
            try:
                msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
            except (FetchTimeoutError, TimeoutError):
                state.recovered("erasure")  # the consumer answers: nothing waiting
                continue
            state.recovered("erasure")
            for msg in msgs:
                try:
                    order = ErasureOrder.from_doc(json.loads(msg.data))
                except ValueError as e:
                    log.warning("ignoring a malformed erasure order: %s", e)
                    await msg.term()
                    continue
                deleted = await apply_order(state, order)
                ack = ack_doc(order.request_id, edge_id, deleted, time.time())
                await js.publish(L.erasure_ack_subject(edge_id), json.dumps(ack).encode())
                await msg.ack()
                log.info("erasure %s applied: %s", order.request_id, deleted)

    def on_error(message: str) -> None:
        state.last_error = f"erasure: {message}"

    await while_connected(state, body, on_error)
