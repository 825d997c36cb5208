"""Poison input at the hub: a message that cannot be stored is retried alone, dead-lettered
after the delivery bound and never blocks the others; an edge cannot claim another
edge's name or file events under arbitrary days."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats

from models import nats_layout as L
from tests.conftest import HubFactory
from tests.integration.helpers import fetch, metric, wait_for
from tests.integration.ingest_helpers import stats, warehouse_rows


def _event(received: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": "page_view",
        "url": "https://shop.example/p/dr01",
        "received_at": received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "edge": "edge-x",
        **extra,
    }


async def _publish(url: str, payloads: list[bytes]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for i, payload in enumerate(payloads):
        await js.publish(L.events_subject("edge-x"), payload, headers={"Nats-Msg-Id": f"edge-x:poison-{i}"})
    await nc.close()


async def _dead_letters_and_lag(url: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(L.DEAD_LETTER_STREAM)
    out = []
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        msg = await js.get_msg(L.DEAD_LETTER_STREAM, seq)
        out.append({"subject": msg.subject, "headers": dict(msg.headers or {}), "events": json.loads(msg.data or b"[]")})
    consumer = await js.consumer_info(L.EVENTS_STREAM, "hub-ingest")
    await nc.close()
    return out, {"pending": int(consumer.num_pending or 0), "unacked": int(consumer.num_ack_pending or 0)}


def test_a_message_that_cannot_be_stored_is_dead_lettered_after_the_bound_and_the_rest_land(
    nats_server: str, start_hub: HubFactory, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    poison_day = now - timedelta(days=3)
    data_dir = tmp_path / "hub-data"
    # a storage fault that hits one message only: its events belong to a lake day whose
    # file cannot be opened (a directory stands where the SQLite file should be)
    (data_dir / "lake" / f"events-{poison_day:%Y-%m-%d}.sqlite").mkdir(parents=True)
    hub = start_hub(nats_server, data_dir=data_dir, INGEST_RETRY_S="0.05", INGEST_WORKERS="1")

    good = [_event(now) for _ in range(3)] + [_event(now, edge="edge-b")]  # claims another edge's name
    poison = [_event(poison_day) for _ in range(2)]
    skewed = [_event(datetime(2001, 1, 1, tzinfo=UTC))]  # a hostile edge clock
    later = [_event(now) for _ in range(2)]
    payloads = [
        json.dumps(good).encode(),
        json.dumps(poison).encode(),
        json.dumps(skewed).encode(),
        b"not json",
        json.dumps(later).encode(),
    ]
    asyncio.run(_publish(nats_server, payloads))

    landed = {e["event_id"] for e in good + skewed + later}
    wait_for(lambda: stats(hub)["accepted"] == len(landed))
    wait_for(lambda: stats(hub)["consumer"]["dead_lettered_messages"] == 1)
    consumer = stats(hub)["consumer"]
    assert consumer["max_deliveries"] == consumer["delivery_bound"] == L.MAX_EVENT_DELIVERIES
    assert consumer["malformed_messages"] == 1 and stats(hub)["dead_letters"] == {"malformed_message": 1}

    rows = warehouse_rows(data_dir, "SELECT event_id, edge, received_at FROM events")
    assert {r[0] for r in rows} == landed  # nothing of the poison message, everything else
    assert {r[1] for r in rows} == {"edge-x"}  # the subject names the edge, not the payload
    skewed_row = next(r for r in rows if r[0] == skewed[0]["event_id"])
    assert skewed_row[2].startswith(f"{now:%Y-}")  # filed under the hub's receive time
    assert not any(Path(data_dir, "lake").glob("events-2001-*"))

    dead, lag = asyncio.run(_dead_letters_and_lag(nats_server))
    assert lag == {"pending": 0, "unacked": 0}  # nothing blocks the consumer
    assert len(dead) == 1 and dead[0]["subject"] == L.dead_letter_subject("edge-x")
    assert {e["event_id"] for e in dead[0]["events"]} == {e["event_id"] for e in poison}
    assert dead[0]["headers"]["P13N-Deliveries"] == str(L.MAX_EVENT_DELIVERIES)
    assert "OperationalError" in dead[0]["headers"]["P13N-Reason"] or "Error" in dead[0]["headers"]["P13N-Reason"]
    scraped = fetch(hub.url + "/metrics", hub.auth("viewer")).text
    assert metric(scraped, "p13n_hub_ingest_dead_lettered_messages_total") == 1
    assert metric(scraped, "p13n_hub_ingest_isolated_messages_total") >= L.MAX_EVENT_DELIVERIES
