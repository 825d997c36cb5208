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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError

from hub.ingest.storage import HubStorage, IngestReport
from models import nats_layout as L

log = logging.getLogger(__name__)

DURABLE = "hub-ingest"
ACK_WAIT_S = 60.0
#: Marts trail the warehouse by at most this long under load (and refresh when idle).
MARTS_EVERY_S = 5.0


@dataclass
class ConsumerState:
    batches: int = 0
    messages: int = 0
    malformed_messages: int = 0
    last_error: str = ""
    pending: int = 0
    last_marts: float = field(default_factory=time.monotonic)


def _events_of(data: bytes) -> list[Any] | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, list) else None


async def consume(js: JetStreamContext, storage: HubStorage, state: ConsumerState, fetch_batch: int = 20) -> None:
    sub = await js.pull_subscribe(
        f"{L.EVENTS_SUBJECT_PREFIX}.>",
        durable=DURABLE,
        stream=L.EVENTS_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_ack_pending=10_000, deliver_policy=DeliverPolicy.ALL
        ),
    )
    delay = 0.5
    while True:
        try:
            msgs = await sub.fetch(fetch_batch, timeout=1.0)
        except (FetchTimeoutError, TimeoutError):
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
        events: list[Any] = []
        malformed: list[bytes] = []
        for msg in msgs:
            batch = _events_of(msg.data)
            if batch is None:
                malformed.append(msg.data)
            else:
                events.extend(batch)
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            report: IngestReport = await asyncio.to_thread(storage.ingest, events, "nats", received)
            if malformed:
                await asyncio.to_thread(storage.dead_letter_raw, malformed, "malformed_message", received)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # storage failure: do not ack, the messages come back
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
        await asyncio.to_thread(storage.refresh_marts)


async def consumer_lag(js: JetStreamContext) -> dict[str, int]:
    info = await js.consumer_info(L.EVENTS_STREAM, DURABLE)
    return {"pending_messages": int(info.num_pending or 0), "unacked_messages": int(info.num_ack_pending or 0)}
