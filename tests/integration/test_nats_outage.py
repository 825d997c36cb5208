"""nats-server down for 10 s while pages are served and events collected: zero failed
page requests, and every accepted event reaches the warehouse once afterwards."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from p13n.procs import free_port, start_nats
from tests.conftest import AgentFactory, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import DESKTOP_UA, fetch
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted, warehouse_rows


def test_ten_second_outage_fails_no_page_and_loses_no_event(
    tmp_path: Path, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    port = free_port()
    nats_child, _ = start_nats(tmp_path / "nats", port=port)
    url = f"nats://127.0.0.1:{port}"
    hub = start_hub(url)
    agent = start_agent(
        origin.url, NATS_URL=url, MODEL_BUNDLE=str(trained_bundle.path), BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key)
    )
    failures: list[str] = []
    pages = 0
    accepted: list[str] = []
    stop = threading.Event()

    def browse() -> None:
        nonlocal pages
        cookie = {"Cookie": "p13n_id=outagevisitor0000000001", "User-Agent": DESKTOP_UA}
        while not stop.is_set():
            reply = fetch(agent.url + "/p/sh01", cookie)
            pages += 1
            if reply.status != 200 or "<p13n-slot" in reply.text:
                failures.append(f"page {reply.status}")
            batch = [page_view("https://s/p/sh02")]
            sent = post_events(agent.url, batch, cookie)
            if sent.status == 202:
                accepted.extend(e["event_id"] for e in batch)
            else:
                failures.append(f"collect {sent.status}")
            time.sleep(0.02)

    worker = threading.Thread(target=browse)
    worker.start()
    try:
        time.sleep(1.0)
        nats_child.proc.send_signal(signal.SIGKILL)
        nats_child.proc.wait()
        time.sleep(10.0)
        nats_child, _ = start_nats(tmp_path / "nats", port=port)
        time.sleep(2.0)
    finally:
        stop.set()
        worker.join(30)
    try:
        assert failures == [] and pages > 100
        wait_accepted(hub, len(accepted), timeout_s=60)
        assert warehouse_rows(hub.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events") == [
            (len(accepted), len(accepted))
        ]
    finally:
        nats_child.stop()
