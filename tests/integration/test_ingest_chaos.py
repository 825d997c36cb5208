"""Exactly once through failures: nats-server killed and restarted while events flow,
and the hub killed mid-batch. Every accepted event ends up once in the warehouse."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from p13n.procs import free_port, start_nats
from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import fetch
from tests.integration.ingest_helpers import page_view, post_events, stats, wait_accepted, warehouse_rows


def test_nats_restart_and_hub_crash_lose_and_duplicate_nothing(
    tmp_path: Path, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    nats_dir = tmp_path / "nats"
    port = free_port()
    nats_child, _ = start_nats(nats_dir, port=port)
    url = f"nats://127.0.0.1:{port}"
    hub_port = free_port()
    hub = start_hub(url, port=hub_port, FETCH_BATCH="5")
    agent = start_agent(origin.url, NATS_URL=url, PUBLISH_BATCH="20")
    accepted: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set() and len(accepted) < 3000:
            batch = [page_view() for _ in range(10)]
            reply = post_events(agent.url, batch)
            if reply.status == 202:
                accepted.extend(e["event_id"] for e in batch)
            else:
                errors.append(f"{reply.status}")
            time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.0)
        nats_child.proc.send_signal(signal.SIGKILL)  # the broker dies while events flow
        nats_child.proc.wait()
        time.sleep(1.0)
        during = json.loads(fetch(agent.url + "/_p13n/healthz").body)
        time.sleep(1.0)
        nats_child, _ = start_nats(nats_dir, port=port)
        time.sleep(0.3)  # the edge is draining its backlog now: the hub is mid-batch
        os.kill(hub.child.proc.pid, signal.SIGKILL)  # the hub dies, mid-batch or not
        hub.child.proc.wait()
        time.sleep(0.5)
        hub = start_hub(url, port=hub_port, data_dir=hub.data_dir, FETCH_BATCH="5")
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(30)
    try:
        assert errors == [] and len(accepted) >= 500
        s = wait_accepted(hub, len(accepted), timeout_s=60)
        assert s["accepted"] == len(accepted)
        rows = warehouse_rows(hub.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events")
        assert rows == [(len(accepted), len(accepted))]
        stored = {r[0] for r in warehouse_rows(hub.data_dir, "SELECT event_id FROM events")}
        assert stored == set(accepted)
        final = stats(hub)
        assert final["received"] == final["accepted"] + final["duplicates_dropped"]
        # the outage was real: the edge saw NATS gone and buffered meanwhile
        assert during["nats"] == "disconnected"
        print(f"sent {len(accepted)} events; hub stats {final}")
    finally:
        nats_child.stop()
