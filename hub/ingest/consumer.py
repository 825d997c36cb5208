"""The hub's durable pull consumer on ``P13N_EVENTS``: store, commit, then ack.

Each fetch takes up to ``fetch_batch`` messages (each a JSON array of events from one
edge), stores all their events in one storage batch on the writer thread, and acks
the messages only after the commit. A crash before the ack means redelivery, which the
event-id deduplication turns into "duplicates dropped", never a second row.

One bad event is dead-lettered by itself at preparation (``hub.ingest.batch``). When a
whole batch still fails to store, its messages are retried one by one, so the others
land; a message that fails on its own while the warehouse takes writes is redelivered
with backoff at most ``MAX_EVENT_DELIVERIES`` times, then copied to the
``P13N_DEAD_LETTERS`` stream with the reason and terminated: it never blocks the
consumer. While storage itself fails, nothing is dead-lettered (messages wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, NotFoundError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hub.ingest.batch import IngestReport, PreparedBatch
from hub.ingest.prep import Preparer
from hub.storage import HubStore
from models import nats_layout as L
from models.tasks import checkpoint

log = logging.getLogger(__name__)

DURABLE = "hub-ingest"
#: How long NATS waits for a message's acknowledgement before it hands the message to
#: another hub process: what a hub that dies costs the events it held (a delay, never
#: a loss: they are stored by whichever hub takes them, once, by event id).
ACK_WAIT_S = 15.0
#: While a batch is held (prepared or stored), its messages are marked in progress this
#: often, so a slow commit keeps them and only a dead hub's messages move.
PROGRESS_S = 5.0
#: Marts trail the warehouse by at most this long under load (and refresh when idle).
MARTS_EVERY_S = 5.0
#: With batches in flight, how long a fetch waits for more messages before committing.
PIPELINE_WAIT_S = 0.05


#: Longest redelivery delay of a message that failed to store (seconds).
MAX_RETRY_DELAY_S = 30.0


def redelivery_delay(delivered: int, base_s: float) -> float:
    """Delay after the n-th failed delivery: base, 2 × base, 4 × base … at most 30 s."""
    return float(min(base_s * 2 ** max(0, delivered - 1), MAX_RETRY_DELAY_S))


@dataclass
class ConsumerState:
    batches: int = 0
    messages: int = 0
    malformed_messages: int = 0
    #: messages moved to the dead-letter stream after the delivery bound
    dead_lettered_messages: int = 0
    #: messages retried one by one after their batch failed
    isolated_messages: int = 0
    #: the most deliveries any message needed (the bound is never passed)
    max_deliveries: int = 0
    #: first redelivery delay of a message that failed to store (seconds)
    retry_base_s: float = 1.0
    last_error: str = ""
    #: messages of the stream not yet delivered to the consumer, as of the last fetch
    pending: int = 0
    last_marts: float = field(default_factory=time.monotonic)
    #: ``batches`` when the marts were last refreshed: behind while it differs
    marts_batches: int = 0


async def consume(
    js: JetStreamContext, storage: HubStore, state: ConsumerState, fetch_batch: int = 20, preparer: Preparer | None = None
) -> None:
    """Fetch, prepare (in worker processes when configured), commit, ack — pipelined:
    while one batch commits, the next ones are being prepared."""
    preparer = preparer or Preparer(0)
    await _ensure_ack_wait(js)
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
    storing: list[Msg] = []  # the batch being stored, until acknowledged
    progress = asyncio.create_task(_keep_in_progress(inflight, storing), name="hub-ingest-progress")
    try:
        await _pipeline(js, sub, storage, state, fetch_batch, preparer, depth, inflight, storing)
    finally:
        progress.cancel()
        # stopping: batches being prepared or stored are handed back at once (a nak:
        # NATS redelivers them now rather than after the ack wait; a batch that did get
        # stored is then a duplicate, ignored by event id); a preparation's outcome, a
        # broken pool at exit included, is not an error to report
        held = [*storing, *(m for _, msgs, _ in inflight for m in msgs)]
        for pending, _, _ in inflight:
            pending.cancel()
        if held:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(m.nak() for m in held), return_exceptions=True), 2)


async def _ensure_ack_wait(js: JetStreamContext) -> None:
    """A consumer made by an older hub keeps its ack wait: set this one's."""
    try:
        info = await js.consumer_info(L.EVENTS_STREAM, DURABLE)
    except NotFoundError:
        return  # created with it by the subscription
    if abs(float(info.config.ack_wait or 0) - ACK_WAIT_S) > 0.01:
        await js.add_consumer(L.EVENTS_STREAM, config=info.config.evolve(ack_wait=ACK_WAIT_S))
        log.info("ingest consumer: ack wait set to %.0f s", ACK_WAIT_S)


async def _keep_in_progress(
    inflight: deque[tuple[asyncio.Future[tuple[PreparedBatch, list[bytes]]], list[Msg], str]], storing: list[Msg]
) -> None:
    """Every :data:`PROGRESS_S`, tell NATS the held messages are being worked on."""
    while True:
        await asyncio.sleep(PROGRESS_S)
        for msg in [*storing, *(m for _, msgs, _ in inflight for m in msgs)]:
            with contextlib.suppress(Exception):  # a message acknowledged meanwhile, a lost connection
                await msg.in_progress()


def _settle(future: asyncio.Future[Any]) -> None:
    """Mark a preparation's failure as seen (it is reported where it is awaited)."""
    if not future.cancelled():
        future.exception()


async def _pipeline(
    js: JetStreamContext,
    sub: Any,
    storage: HubStore,
    state: ConsumerState,
    fetch_batch: int,
    preparer: Preparer,
    depth: int,
    inflight: deque[tuple[asyncio.Future[tuple[PreparedBatch, list[bytes]]], list[Msg], str]],
    storing: list[Msg],
) -> None:
    delay = 0.5
    while True:
        checkpoint()
        if len(inflight) < depth:
            try:
                # short waits while batches are in flight, or while the marts are behind
                # the warehouse: once the stream drains they are refreshed at once
                busy = bool(inflight) or state.marts_batches != state.batches
                msgs = await sub.fetch(fetch_batch, timeout=PIPELINE_WAIT_S if busy else 1.0)
            except (FetchTimeoutError, TimeoutError):
                msgs = []
                state.pending = 0  # nothing left to deliver
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
                state.pending = int(msgs[-1].metadata.num_pending or 0)
            msgs = await _past_bound(js, state, msgs)
            if msgs:
                received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                prepared = asyncio.ensure_future(preparer.prepare([m.data for m in msgs], received, [_edge(m) for m in msgs]))
                prepared.add_done_callback(_settle)
                inflight.append((prepared, msgs, received))
                if len(inflight) < depth:
                    continue  # keep the preparers busy before committing
        if not inflight:
            continue
        pending, msgs, received = inflight.popleft()
        storing[:] = msgs
        for msg in msgs:
            state.max_deliveries = max(state.max_deliveries, _deliveries(msg))
        try:
            report = await _store(storage, state, await pending, received)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # preparation or storage failure: retry each message alone
            state.last_error = f"store: {type(e).__name__}: {e}"[:300]
            first = min(_deliveries(m) for m in msgs) == 1  # the traceback once, not per redelivery
            log.error(
                "storing a batch of %d messages failed (%s); retrying them one by one",
                len(msgs),
                state.last_error,
                exc_info=first,
            )
            await _isolate(js, storage, state, preparer, msgs, received, storing)
            storing.clear()
            continue
        for msg in msgs:
            await msg.ack()
        storing.clear()
        state.batches += 1
        state.messages += len(msgs)
        log.debug("stored %d events (%d duplicates)", report.accepted, report.duplicates)
        await _maybe_refresh_marts(storage, state, idle=False)


async def _past_bound(js: JetStreamContext, state: ConsumerState, msgs: list[Msg]) -> list[Msg]:
    """Dead-letter messages already delivered more often than the bound without an
    ack (the hub stopped or crashed while storing them); returns the others."""
    keep: list[Msg] = []
    for msg in msgs:
        delivered = _deliveries(msg)
        if delivered <= L.MAX_EVENT_DELIVERIES:
            keep.append(msg)
            continue
        await dead_letter(js, msg, "delivery bound passed without an acknowledgement", delivered)
        await msg.term()
        state.dead_lettered_messages += 1
        log.error("event message dead-lettered after %d unacknowledged deliveries", delivered)
    return keep


def _edge(msg: Msg) -> str:
    """The edge that published ``msg``: its subject's last token (permissions allow an
    edge to publish on its own subject only)."""
    return msg.subject.rsplit(".", 1)[-1]


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message (never from the consumer)
        return 1


async def _store(
    storage: HubStore, state: ConsumerState, prepared_batch: tuple[PreparedBatch, list[bytes]], received: str
) -> IngestReport:
    prepared, malformed = prepared_batch
    report: IngestReport = await asyncio.to_thread(storage.commit, prepared)
    if malformed:
        await asyncio.to_thread(storage.dead_letter_raw, malformed, "malformed_message", received)
        state.malformed_messages += len(malformed)
    return report


async def _isolate(
    js: JetStreamContext,
    storage: HubStore,
    state: ConsumerState,
    preparer: Preparer,
    msgs: list[Msg],
    received: str,
    held: list[Msg] | None = None,
) -> None:
    """Store each message of a failed batch on its own; a message that still fails is
    redelivered with backoff, or dead-lettered once it reached the delivery bound while
    the warehouse takes writes (a poison message, not a storage outage). Each message
    leaves ``held`` (those kept in progress) once it is settled."""
    for msg in list(msgs):
        try:
            await _isolate_one(js, storage, state, preparer, msg, received)
        finally:
            if held is not None and msg in held:
                held.remove(msg)


async def _isolate_one(
    js: JetStreamContext, storage: HubStore, state: ConsumerState, preparer: Preparer, msg: Msg, received: str
) -> None:
    state.isolated_messages += 1
    try:
        await _store(storage, state, await preparer.prepare([msg.data], received, [_edge(msg)]), received)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"[:300]
        delivered = _deliveries(msg)
        if delivered >= L.MAX_EVENT_DELIVERIES and await asyncio.to_thread(storage.writable):
            await dead_letter(js, msg, reason, delivered)
            await msg.term()
            state.dead_lettered_messages += 1
            log.error("event message dead-lettered after %d deliveries: %s", delivered, reason)
        else:
            log.warning(
                "event message failed on its own (delivery %d of at most %d): %s", delivered, L.MAX_EVENT_DELIVERIES, reason
            )
            await msg.nak(delay=redelivery_delay(delivered, state.retry_base_s))
        return
    await msg.ack()
    state.batches += 1
    state.messages += 1


async def dead_letter(js: JetStreamContext, msg: Msg, reason: str, delivered: int) -> None:
    """Copy a message the hub cannot store to ``P13N_DEAD_LETTERS`` (same edge)."""
    edge = _edge(msg)
    seq = msg.metadata.sequence.stream
    headers = {
        "Nats-Msg-Id": f"dead:{L.EVENTS_STREAM}:{seq}",
        "P13N-Reason": reason.replace("\r", " ").replace("\n", " "),
        "P13N-Subject": msg.subject,
        "P13N-Deliveries": str(delivered),
    }
    await js.publish(L.dead_letter_subject(edge), msg.data, headers=headers, timeout=5)


class ConsumerCollector:
    """The consumer's counts as Prometheus metrics (read at scrape time)."""

    def __init__(self, state: ConsumerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        for name, doc, value in (
            ("p13n_hub_ingest_messages", "Event messages stored", s.messages),
            (
                "p13n_hub_ingest_malformed_messages",
                "Event messages that were not a JSON array (dead letters)",
                s.malformed_messages,
            ),
            (
                "p13n_hub_ingest_isolated_messages",
                "Event messages retried one by one after their batch failed",
                s.isolated_messages,
            ),
            (
                "p13n_hub_ingest_dead_lettered_messages",
                "Event messages moved to the dead-letter stream after the delivery bound",
                s.dead_lettered_messages,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "p13n_hub_ingest_max_deliveries", "Most deliveries any event message needed so far", value=s.max_deliveries
        )
        yield GaugeMetricFamily(
            "p13n_hub_ingest_pending_messages",
            "Event messages in the stream not yet delivered to the hub's consumer (as of its last fetch)",
            value=s.pending,
        )


async def _maybe_refresh_marts(storage: HubStore, state: ConsumerState, idle: bool) -> None:
    now = time.monotonic()
    if idle or now - state.last_marts >= MARTS_EVERY_S:
        state.last_marts = now
        batches = state.batches
        await asyncio.to_thread(storage.refresh_marts)
        state.marts_batches = batches


async def consumer_lag(js: JetStreamContext) -> dict[str, int]:
    info = await js.consumer_info(L.EVENTS_STREAM, DURABLE)
    return {"pending_messages": int(info.num_pending or 0), "unacked_messages": int(info.num_ack_pending or 0)}
