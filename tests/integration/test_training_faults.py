"""Training runs that go wrong, with the real components: an empty warehouse, the
training process killed mid-run, NATS gone when the bundle is to be pushed. Each time
the live bundle stays, the run's record says why, and the next run works."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from p13n.procs import free_port, start_nats
from tests.conftest import AgentFactory, Hub, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import descendants, fetch, wait_for
from tests.integration.ingest_helpers import wait_accepted
from tests.integration.test_bundle_sync import health, p13n
from tests.integration.test_training_loop import finished, population, post_events


def training_hub(start_hub: HubFactory, nats_url: str, trained_bundle: TrainedBundle) -> Hub:
    key = str(trained_bundle.public_key)
    return start_hub(
        nats_url,
        BUNDLE_PUBLIC_KEY=key,
        TRAINING_KEY=str(Path(key).with_name("bundle-signing.key")),
        TRAINING_INTERVAL_S="3600",
        TRAINING_TUNE="false",
        TRAINING_MIN_SUBJECTS="10",
        TRAINING_MIN_INTERACTIONS="50",
        NATS_RETRY_S="0.1",
    )


def start_run(hub: Hub, force: bool = False) -> str:
    body = b'{"force": true}' if force else b""
    reply = fetch(hub.url + "/v1/training/runs", hub.auth("operator"), "POST", body)
    assert reply.status == 202, reply.body
    return str(json.loads(reply.body)["run"]["id"])


def started_training_child(hub: Hub) -> tuple[str, set[int]]:
    """Start a run; (its id, the process it trains in). The training process is spawned:
    its command line names multiprocessing's spawn entry, and it is the one that was not
    under the hub before (the ingest workers were)."""

    def spawned() -> set[int]:
        return {pid for pid in descendants(hub.child.proc.pid) if b"spawn_main" in _cmdline(pid)}

    before = spawned()
    run_id = start_run(hub)
    wait_for(lambda: bool(spawned() - before), timeout_s=30)
    return run_id, spawned() - before


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_an_empty_warehouse_and_a_killed_training_process_leave_the_live_bundle(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = training_hub(start_hub, nats_server, trained_bundle)
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key), ID="edge-faults")
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == 1)

    empty = finished(hub, start_run(hub))
    assert empty["status"] == "skipped" and empty["reason"].startswith("not enough data: 0 interactions"), empty
    assert empty["pushed"] is False and health(edge.url)["model_version"] == 1

    events = population(120, seed=3)
    post_events(hub, events)
    wait_accepted(hub, len(events))
    run_id, child = started_training_child(hub)
    for pid in child:
        os.kill(pid, signal.SIGKILL)  # the training process dies mid-run (the OOM killer, say)
    crashed = finished(hub, run_id)
    assert crashed["status"] == "failed" and "ended without a result" in crashed["reason"], crashed
    assert health(edge.url)["model_version"] == 1
    metrics = fetch(hub.url + "/metrics", hub.auth("viewer")).text
    assert 'p13n_hub_training_runs_total{outcome="failed"} 1.0' in metrics

    # nothing was left behind that blocks the next run (forced: whether the gate would
    # pass it depends on the sample, and shipping is what is checked here)
    again = finished(hub, start_run(hub, force=True))
    assert again["status"] in ("passed", "forced") and again["version"] == 2, again
    wait_for(lambda: health(edge.url)["model_version"] == 2, timeout_s=60)


def test_nats_gone_at_the_push_fails_the_run_and_loses_nothing(
    tmp_path: Path, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    port = free_port()
    nats_child, _ = start_nats(tmp_path / "nats", port=port)
    url = f"nats://127.0.0.1:{port}"
    try:
        hub = training_hub(start_hub, url, trained_bundle)
        edge = start_agent(origin.url, NATS_URL=url, BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key), ID="edge-outage")
        assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
        wait_for(lambda: health(edge.url)["model_version"] == 1)
        events = population(120, seed=4)
        post_events(hub, events)
        wait_accepted(hub, len(events))

        run_id, _ = started_training_child(hub)
        nats_child.proc.send_signal(signal.SIGKILL)  # NATS goes while the model trains
        nats_child.proc.wait()
        failed: dict[str, Any] = finished(hub, run_id)
        assert failed["status"] == "failed" and failed["pushed"] is False, failed
        assert failed["reason"], failed

        nats_child, _ = start_nats(tmp_path / "nats", port=port)  # back, with its stored state
        wait_for(lambda: fetch(hub.url + "/v1/healthz").status == 200, timeout_s=30)
        wait_for(lambda: health(edge.url)["nats"] == "connected", timeout_s=30)
        assert health(edge.url)["model_version"] == 1  # the live bundle stayed
        stats = json.loads(fetch(hub.url + "/v1/stats", hub.auth("viewer")).body)
        assert stats["accepted"] == len(events)  # nothing lost
        time.sleep(0.5)
        again = finished(hub, start_run(hub, force=True))
        assert again["status"] in ("passed", "forced") and again["pushed"], again
        wait_for(lambda: health(edge.url)["model_version"] == again["version"])
    finally:
        nats_child.stop()
