"""Stopping the hub mid-ingest: it exits by itself on SIGTERM, says it stopped, leaves
no process behind, and the work it had not finished is handed back — a hub started
again on the same data ends with every event stored exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import nats

from hub.nats_setup import ensure_layout
from models import nats_layout as L
from tests.conftest import HubFactory
from tests.integration.helpers import descendants
from tests.integration.ingest_helpers import stats, wait_accepted

EVENTS = 60_000


async def fill(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_layout(js)
    for n in range(EVENTS // 500):
        batch = [{"event_id": f"stop{n:04d}x{i:04d}", "type": "page_view", "url": "https://s.example/"} for i in range(500)]
        await js.publish(L.events_subject("edge-stop"), json.dumps(batch).encode(), headers={"Nats-Msg-Id": f"stop-{n}"})
    await nc.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_busy_hub_stops_cleanly_and_hands_back_its_work(nats_server: str, start_hub: HubFactory, tmp_path: Path) -> None:
    asyncio.run(fill(nats_server))
    data = tmp_path / "hub-data"
    hub = start_hub(nats_server, data_dir=data)
    while stats(hub)["accepted"] == 0:  # mid-way: batches are being prepared and stored
        time.sleep(0.05)
    tree = [hub.child.proc.pid, *descendants(hub.child.proc.pid)]
    hub.child.proc.send_signal(signal.SIGTERM)
    assert hub.child.proc.wait(30) == 0  # by itself, not killed
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in tree if _alive(p)] == []
    log = hub.child.log()
    assert "p13n hub stopped" in log and "never retrieved" not in log and "Traceback" not in log, log[-2000:]

    again = start_hub(nats_server, data_dir=data)
    final = wait_accepted(again, EVENTS, timeout_s=120)
    assert final["accepted"] == EVENTS and final["received"] >= EVENTS
