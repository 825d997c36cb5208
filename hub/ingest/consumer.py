"""The hub's durable pull consumer on ``P13N_EVENTS``: store, commit, then ack.

Each fetch takes up to ``fetch_batch`` messages (each a JSON array of events from one
edge), stores all their events in one storage batch on the writer thread, and acks
the messages only after the commit. A crash before the ack means redelivery, which the
event-id deduplication turns into "duplicates dropped", never a second row.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError

from hub.ingest.prep import Preparer
from hub.ingest.storage import HubStorage, IngestReport, PreparedBatch
from models import nats_layout as L

log = logging.getLogger(__name__)

DURABLE = "hub-ingest"
ACK_WAIT_S = 60.0
#: Marts trail the warehouse by at most this long under load (and refresh when idle).
MARTS_EVERY_S = 5.0
#: With batches in flight, how long a fetch waits for more messages before committing.
PIPELINE_WAIT_S = 0.05


@dataclass
class ConsumerState:
    batches: int = 0
    messages: int = 0
    malformed_messages: int = 0
    last_error: str = ""
    pending: int = 0
    last_marts: float = field(default_factory=time.monotonic)
    #: ``batches`` when the marts were last refreshed: behind while it differs
    marts_batches: int = 0


async def consume(
    js: JetStreamContext, storage: HubStorage, state: ConsumerState, fetch_batch: int = 20, preparer: Preparer | None = None
) -> None:
    """Fetch, prepare (in worker processes when configured), commit, ack — pipelined:
    while one batch commits, the next ones are being prepared."""
    preparer = preparer or Preparer(0)
    sub = await js.pull_subscribe(
        f"{L.EVENTS_SUBJECT_PREFIX}.>",
        durable=DURABLE,
        stream=L.EVENTS_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_ack_pending=10_000, deliver_policy=DeliverPolicy.ALL
        ),
    )
    depth = max(1, preparer.workers) + 1
    inflight: deque[tuple[asyncio.Future[tuple[PreparedBatch, list[bytes]]], list[Msg], str]] = deque()
    delay = 0.5
    while True:
        if len(inflight) < depth:
            try:
                # short waits while batches are in flight, or while the marts are behind
                # the warehouse: once the stream drains they are refreshed at once
                busy = bool(inflight) or state.marts_batches != state.batches
                msgs = await sub.fetch(fetch_batch, timeout=PIPELINE_WAIT_S if busy else 1.0)
            except (FetchTimeoutError, TimeoutError):
                msgs = []
                if not inflight:
                    await _maybe_refresh_marts(storage, state, idle=True)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                state.last_error = f"fetch: {type(e).__name__}: {e}"[:300]
                log.warning("fetch failed (%s); retrying in %.1fs", state.last_error, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 15.0)
                continue
            delay = 0.5
            if msgs:
                received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                inflight.append((asyncio.ensure_future(preparer.prepare([m.data for m in msgs], received)), msgs, received))
                if len(inflight) < depth:
                    continue  # keep the preparers busy before committing
        if not inflight:
            continue
        pending, msgs, received = inflight.popleft()
        try:
            prepared, malformed = await pending
            report: IngestReport = await asyncio.to_thread(storage.commit, prepared)
            if malformed:
                await asyncio.to_thread(storage.dead_letter_raw, malformed, "malformed_message", received)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # preparation or storage failure: do not ack, the messages come back
            state.last_error = f"store: {type(e).__name__}: {e}"[:300]
            log.error("storing a batch failed; it will be redelivered", exc_info=True)
            for msg in msgs:
                await msg.nak(delay=2.0)
            continue
        for msg in msgs:
            await msg.ack()
        state.batches += 1
        state.messages += len(msgs)
        state.malformed_messages += len(malformed)
        log.debug("stored %d events (%d duplicates)", report.accepted, report.duplicates)
        await _maybe_refresh_marts(storage, state, idle=False)


async def _maybe_refresh_marts(storage: HubStorage, state: ConsumerState, idle: bool) -> None:
    now = time.monotonic()
    if idle or now - state.last_marts >= MARTS_EVERY_S:
        state.last_marts = now
        batches = state.batches
        await asyncio.to_thread(storage.refresh_marts)
        state.marts_batches = batches


async def consumer_lag(js: JetStreamContext) -> dict[str, int]:
    info = await js.consumer_info(L.EVENTS_STREAM, DURABLE)
    return {"pending_messages": int(info.num_pending or 0), "unacked_messages": int(info.num_ack_pending or 0)}
