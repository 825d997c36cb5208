"""A site's edge attached through a NATS leaf node (``p13n nats-config --leaf``): events
flow to the hub across the leaf link; when the link drops the edge keeps serving and
buffering, then catches up exactly once; and the leaf link carries no more than the
site's edges may do, even from a leaf node its site reconfigured."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import nats
import pytest

from models import nats_layout as L
from p13n.procs import NatsSite, free_port, nats_server_binary, spawn, start_nats_site, wait_port
from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import DESKTOP_UA, fetch, wait_for
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted, warehouse_rows

VISITOR = "leafvisitor0000000000001"
COOKIE = {"Cookie": f"p13n_id={VISITOR}", "User-Agent": DESKTOP_UA}
#: characters a URL's user info must escape: the configuration must still work
SITE_PASSWORD = "s/te+p@ss:" + secrets.token_urlsafe(12)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[NatsSite]:
    nodes = start_nats_site(tmp_path / "site", ["edge-1"], SITE_PASSWORD)
    try:
        yield nodes
    finally:
        nodes.stop()


def send(agent_url: str, n: int) -> set[str]:
    batch = [page_view(f"https://shop.example/p/dr0{i % 9 + 1}") for i in range(n)]
    reply = post_events(agent_url, batch, COOKIE)
    assert reply.status == 202, reply.text
    return {e["event_id"] for e in batch}


def test_an_edge_behind_a_leaf_node_buffers_through_a_dropped_link_and_catches_up(
    site: NatsSite, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory
) -> None:
    hub = start_hub(site.hub_url)
    edge = start_agent(origin.url, NATS_URL=site.edge_urls["edge-1"], ID="edge-1", STATUS_INTERVAL_S="0.5")
    consent = {"event_id": uuid.uuid4().hex, "type": "consent", "categories": ["necessary", "analytics", "personalization"]}
    assert post_events(edge.url, [consent], COOKIE).status == 202
    sent = send(edge.url, 20)
    wait_accepted(hub, 21, timeout_s=60)
    # the hub sees the edge across the leaf link (its heartbeat)
    wait_for(
        lambda: any(e["edge_id"] == "edge-1" for e in json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)["edges"])
    )

    site.hub_server.proc.kill()  # the hub's server is gone: the leaf link drops
    site.hub_server.proc.wait()
    sent |= send(edge.url, 20)
    page = fetch(edge.url + "/p/dr01", COOKIE)
    assert page.status == 200 and 'data-p13n-item="' in page.text
    wait_for(lambda: json.loads(fetch(edge.url + "/_p13n/healthz").body)["outbox_depth"] >= 20)

    site.restart_hub_server()
    wait_accepted(hub, 41, timeout_s=90)
    assert warehouse_rows(hub.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(41, 41)]
    stored = {r[0] for r in warehouse_rows(hub.data_dir, "SELECT event_id FROM events WHERE type = 'page_view'")}
    assert stored == sent
    wait_for(lambda: json.loads(fetch(edge.url + "/_p13n/healthz").body)["outbox_depth"] == 0)


def test_a_reconfigured_leaf_node_still_carries_only_its_edges_rights(
    site: NatsSite, start_hub: HubFactory, tmp_path: Path
) -> None:
    start_hub(site.hub_url)  # declares the layout
    binary = nats_server_binary()
    assert binary is not None
    # the site's operator runs a leaf node with an all-powerful local user, linked as the site
    rogue_port = free_port()
    rogue_conf = tmp_path / "rogue.conf"
    remote = f"nats-leaf://site-1:{quote(SITE_PASSWORD, safe='')}@127.0.0.1:{site.leaf_listen_port}"
    rogue_conf.write_text(
        f'listen: "127.0.0.1:{rogue_port}"\nauthorization {{ users: [{{user: "root", password: "x"}}] }}\n'
        f'leafnodes {{ remotes: [{{urls: ["{remote}"]}}] }}\n'
    )
    rogue = spawn("nats-rogue", [binary, "-c", str(rogue_conf)], tmp_path)
    wait_port(rogue, rogue_port)

    async def attempt() -> tuple[str, str, int]:
        hub_nc = await nats.connect(site.hub_url)
        # replies cross the link only to the inbox prefix its edge has
        nc = await nats.connect(f"nats://root:x@127.0.0.1:{rogue_port}", inbox_prefix=L.edge_inbox_prefix("edge-1"))
        try:
            js = nc.jetstream(timeout=2)
            outcomes = []
            for subject in (L.events_subject("edge-1"), L.events_subject("edge-2")):
                for _ in range(40):  # the leaf link and its interest settle
                    try:
                        await js.publish(subject, b"{}")
                        outcomes.append("stored")
                        break
                    except Exception as e:  # no responder across the link: refused
                        last = type(e).__name__
                        if subject == L.events_subject("edge-2"):
                            outcomes.append(f"refused ({last})")
                            break
                        await asyncio.sleep(0.25)
                else:
                    outcomes.append("never stored")
            info = await hub_nc.jetstream().stream_info(L.EVENTS_STREAM)
            return outcomes[0], outcomes[1], int(info.state.messages)
        finally:
            await nc.close()
            await hub_nc.close()

    try:
        own, other, stored = asyncio.run(attempt())
    finally:
        rogue.stop()
    assert own == "stored"  # what its edge may do crosses the link
    assert other.startswith("refused") and stored == 1  # another edge's subject does not
