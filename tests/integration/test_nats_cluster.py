"""The product on a three-node JetStream cluster (``p13n nats-config --cluster``, streams
and buckets on three replicas): while one node is killed and restarted, events keep
flowing exactly once into the warehouse, pages keep being served, and an erasure
reaches the edge."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from p13n.procs import NatsCluster, start_nats_cluster
from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import DESKTOP_UA, Reply, fetch, wait_for
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted, warehouse_rows

VISITOR = "clustervisitor0000000001"
COOKIE = {"Cookie": f"p13n_id={VISITOR}", "User-Agent": DESKTOP_UA}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nodes = start_nats_cluster(tmp_path / "cluster", ["edge-1"])
    try:
        yield nodes
    finally:
        nodes.stop()


def send(agent_url: str, n: int) -> set[str]:
    """``n`` page views in batches of ten; their event ids."""
    ids: set[str] = set()
    for start in range(0, n, 10):
        batch = [page_view(f"https://shop.example/p/dr0{(start + i) % 9 + 1}") for i in range(min(10, n - start))]
        reply = post_events(agent_url, batch, COOKIE)
        assert reply.status == 202, reply.text
        ids |= {e["event_id"] for e in batch}
    return ids


def erase_honouring_retry(url: str, headers: dict[str, str], attempts: int = 10) -> Reply:
    """DELETE as a client following the API's contract would: a 503 (the cluster still
    electing after the restart; nothing recorded) is retried after its retry-after."""
    for _ in range(attempts):
        reply = fetch(url, headers, method="DELETE")
        if reply.status != 503:
            return reply
        assert reply.headers.get("retry-after"), reply.text
        time.sleep(1.0)  # shorter than the advertised 5 s: the test's cluster settles fast
    return reply


def test_a_node_killed_and_restarted_loses_and_duplicates_nothing(
    cluster: NatsCluster, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory
) -> None:
    hub = start_hub(cluster.hub_url, NATS_REPLICAS="3")
    edge = start_agent(origin.url, NATS_URL=cluster.edge_urls["edge-1"], ID="edge-1", STATUS_INTERVAL_S="0.5")
    consent = {"event_id": uuid.uuid4().hex, "type": "consent", "categories": ["necessary", "analytics", "personalization"]}
    assert post_events(edge.url, [consent], COOKIE).status == 202
    sent = send(edge.url, 40)
    wait_accepted(hub, 41, timeout_s=60)  # the layout on three replicas is up and ingesting
    layout = json.loads(fetch(hub.url + "/v1/stats", hub.auth("viewer")).body)
    assert layout["accepted"] == 41

    cluster.nodes[0].proc.kill()  # one node of three: every stream keeps its quorum
    cluster.nodes[0].proc.wait()
    sent |= send(edge.url, 40)
    page = fetch(edge.url + "/p/dr01", COOKIE)
    assert page.status == 200 and 'data-p13n-item="' in page.text
    wait_accepted(hub, 81, timeout_s=60)

    cluster.restart(0)
    sent |= send(edge.url, 40)
    wait_accepted(hub, 121, timeout_s=60)

    rows = warehouse_rows(hub.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events")
    assert rows == [(121, 121)]  # every event once
    stored = {r[0] for r in warehouse_rows(hub.data_dir, "SELECT event_id FROM events WHERE type = 'page_view'")}
    assert stored == sent

    # an erasure over the cluster reaches the edge and completes
    wait_for(
        lambda: "edge-1" in (json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body).get("erasure_registered") or [])
    )
    reply = erase_honouring_retry(hub.url + f"/v1/subjects/{VISITOR}", hub.auth("privacy_officer"))
    assert reply.status == 202, reply.text
    request_id = json.loads(reply.body)["request_id"]

    def done() -> bool:
        status = json.loads(fetch(hub.url + f"/v1/erasures/{request_id}", hub.auth("privacy_officer")).body)
        return bool(status["status"] == "completed")

    wait_for(done, timeout_s=60)
    assert warehouse_rows(hub.data_dir, "SELECT count(*) FROM events") == [(0,)]


def test_a_cluster_with_routes_over_tls_forms_and_ingests(
    tmp_path: Path, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory
) -> None:
    from tests.integration.tls_helpers import make_ca

    certs = tmp_path / "certs"
    certs.mkdir()
    tls_cluster = start_nats_cluster(tmp_path / "tls-cluster", ["edge-1"], route_tls=make_ca(certs))
    try:
        conf = tls_cluster.configs[0].read_text()
        assert "verify: true" in conf and str(certs / "ca.pem") in conf
        hub = start_hub(tls_cluster.hub_url, NATS_REPLICAS="3")  # three replicas: the routes carry them
        edge = start_agent(origin.url, NATS_URL=tls_cluster.edge_urls["edge-1"], ID="edge-1")
        consent = {"event_id": uuid.uuid4().hex, "type": "consent", "categories": ["necessary", "analytics"]}
        assert post_events(edge.url, [consent], COOKIE).status == 202
        sent = send(edge.url, 10)
        wait_accepted(hub, 11, timeout_s=60)
        stored = {r[0] for r in warehouse_rows(hub.data_dir, "SELECT event_id FROM events WHERE type = 'page_view'")}
        assert stored == sent
    finally:
        tls_cluster.stop()
