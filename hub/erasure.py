"""Erasure requests across the fleet: orders out, acknowledgements in, status per edge.

The registered edges are the durable consumers ``erasure-<edge>`` on ``P13N_ERASURE``
(the hub creates one when it first hears an edge's heartbeat, since edges may not
create consumers; ``DELETE /v1/edges/{id}`` removes one):
an edge offline when an order is published still finds it there on reconnect. An
order names the subject's erasure tokens only. Edges acknowledge on
``p13n.erasure.acks.<edge>`` (kept in the same stream, so acks sent while the hub is
down are read when it is back); a request completes when every edge registered at
request time has acknowledged.

The request record is the minimal trace the erasure leaves: request id, tokens, who
asked, when, rows deleted per tier, and the acknowledgements. The store keeps it
(``HubStore.erasures``, an :class:`hub.storage.ErasureLedger`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, FetchTimeoutError, NotFoundError

from hub.storage import ErasureLedger
from models import nats_layout as L
from models.erasure import ACK_KIND, ErasureOrder
from models.tasks import checkpoint

log = logging.getLogger(__name__)

ACKS_DURABLE = "hub-erasure-acks"


async def registered_edges(js: JetStreamContext) -> list[str]:
    """Edge ids that hold an erasure consumer (they must acknowledge every order)."""
    names: list[str] = []
    offset = 0
    while True:  # the API pages consumers 256 at a time
        page = await js.consumers_info(L.ERASURE_STREAM, offset=offset)
        names.extend(c.name for c in page if c.name)
        if len(page) < 256:
            break
        offset += len(page)
    prefix = L.ERASURE_CONSUMER_PREFIX
    return sorted({n[len(prefix) :] for n in names if n.startswith(prefix)})


#: Seconds an edge has to acknowledge an order before it is delivered again.
EDGE_ACK_WAIT_S = 60.0


async def register_edge(js: JetStreamContext, edge_id: str) -> None:
    """Create ``edge_id``'s durable consumer of erasure orders (idempotent): from now
    on every order waits for that edge's acknowledgement. The edge only binds to it."""
    await js.add_consumer(
        L.ERASURE_STREAM,
        ConsumerConfig(
            name=L.erasure_consumer(edge_id),
            durable_name=L.erasure_consumer(edge_id),
            filter_subject=L.ERASURE_ORDERS_SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=EDGE_ACK_WAIT_S,
        ),
    )


async def deregister_edge(js: JetStreamContext, edge_id: str) -> bool:
    try:
        return bool(await js.delete_consumer(L.ERASURE_STREAM, L.erasure_consumer(edge_id)))
    except NotFoundError:
        return False


async def publish_order(js: JetStreamContext, order: ErasureOrder) -> None:
    await js.publish(
        L.ERASURE_ORDERS_SUBJECT, json.dumps(order.to_doc()).encode(), headers={"Nats-Msg-Id": f"order:{order.request_id}"}
    )


async def purge_profiles(js: JetStreamContext, subjects: frozenset[str]) -> int:
    """Remove the subjects' keys from the profiles bucket, leaving no marker behind.

    A KV purge writes a marker whose subject is the key (the pseudonym); instead every
    message of the key is deleted from the bucket's stream with the server's secure
    erase (overwritten, not just unlinked). Edges drop their copy through the order.
    """
    stream = f"KV_{L.PROFILES_BUCKET}"
    removed = 0
    for subject in subjects:
        while True:
            try:
                msg = await js.get_last_msg(stream, f"$KV.{L.PROFILES_BUCKET}.{subject}")
            except NotFoundError:
                break
            if msg.seq is None:
                break
            try:
                await js.delete_msg(stream, msg.seq)
            except APIError:  # a bucket created by an older version denies deletes
                log.warning("profiles bucket denies message deletes: purging instead (recreate it to erase securely)")
                await js.purge_stream(stream, subject=f"$KV.{L.PROFILES_BUCKET}.{subject}")
            removed += 1
    return removed


async def purge_dead_letters(js: JetStreamContext, subjects: frozenset[str]) -> int:
    """Remove the subjects' events from dead-lettered event messages: a message holding
    any of them is republished without them (when others remain) and the original is
    deleted with the server's secure erase. Returns how many events were removed."""
    stream = L.DEAD_LETTER_STREAM
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return 0
    first, last = int(info.state.first_seq or 0), int(info.state.last_seq or 0)
    needles = [s.encode() for s in subjects if s]
    removed = 0
    seq = first
    while first and seq <= last:
        try:
            msg = await js.get_msg(stream, seq, subject=f"{L.DEAD_LETTER_PREFIX}.>", next=True)
        except NotFoundError:
            break
        if msg.seq is None or msg.seq > last:
            break
        seq = msg.seq + 1
        data = msg.data or b""
        if not any(n in data for n in needles):
            continue
        try:
            events = json.loads(data)
        except ValueError:
            events = None
        kept = (
            [
                e
                for e in events
                if not (isinstance(e, dict) and (e.get("anonymous_id") in subjects or e.get("user_id") in subjects))
            ]
            if isinstance(events, list)
            else []
        )
        removed += (len(events) if isinstance(events, list) else 1) - len(kept)
        if kept and msg.subject:
            headers = {k: v for k, v in (msg.headers or {}).items() if k != "Nats-Msg-Id"}
            headers["Nats-Msg-Id"] = f"dead-rewritten:{msg.seq}"
            await js.publish(msg.subject, json.dumps(kept).encode(), headers=headers)
        await js.delete_msg(stream, msg.seq)
    return removed


async def consume_acks(js: JetStreamContext, records: ErasureLedger) -> None:
    """Read edge acknowledgements forever (durable: none is lost while the hub is down)."""
    sub = await js.pull_subscribe(
        f"{L.ERASURE_ACKS_PREFIX}.>",
        durable=ACKS_DURABLE,
        stream=L.ERASURE_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=30),
    )
    while True:
        checkpoint()
        try:
            msgs = await sub.fetch(1, timeout=5)  # one at a time: a batch fetch waits to fill (edge_agent/erasure.py)
        except (FetchTimeoutError, TimeoutError):
            continue
        for msg in msgs:
            edge_from_subject = msg.subject.rsplit(".", 1)[-1]
            try:
                doc = json.loads(msg.data)
                if doc.get("kind") != ACK_KIND or doc.get("edge_id") != edge_from_subject:
                    raise ValueError("not an erasure acknowledgement of this edge")
                deleted = {str(k): int(v) for k, v in dict(doc.get("deleted") or {}).items()}
                done = await asyncio.to_thread(records.ack, str(doc["request_id"]), edge_from_subject, deleted, time.time())
                if done:
                    log.info("erasure %s completed", doc["request_id"])
            except (ValueError, KeyError, TypeError) as e:
                log.warning("ignoring a malformed erasure acknowledgement on %s: %s", msg.subject, e)
            await msg.ack()
