"""Personal data at rest: identify traits sent through every path (the edge's collect
endpoint, the hub's events API, an invalid event and a malformed NATS message that end
in the dead letters) leave no plaintext in any file of the hub's or the edge's data
directory; data files are 0600 and directories 0700; the access export still shows it
all, opened."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path

import nats

from models import nats_layout as L
from tests.conftest import API_KEY, AgentFactory, HubFactory, Origin
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import stats, wait_accepted

EMAIL, NAME, PHONE = "ada.lovelace@example.org", "Ada Lovelace-Byron", "+44 20 7946 0958"
API_EMAIL = "grace.hopper@example.net"
DEAD_EMAIL, RAW_EMAIL = "dead.letter@example.com", "malformed.message@example.com"
SECRETS = [EMAIL, NAME, PHONE, API_EMAIL, DEAD_EMAIL, RAW_EMAIL]
VISITOR = "personalVisitor000000001"


def plaintext_in(dirs: list[Path], needles: list[str]) -> list[str]:
    found = []
    for d in dirs:
        for path in d.rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                found += [f"{n} in {path}" for n in needles if n.encode() in blob]
    return found


def loose_modes(dirs: list[Path]) -> list[str]:
    out = []
    for d in dirs:
        for path in [d, *d.rglob("*")]:
            mode = path.stat().st_mode
            if stat.S_IMODE(mode) & 0o077:
                out.append(f"{path}: {oct(stat.S_IMODE(mode))}")
    return out


async def publish_malformed(url: str) -> None:
    nc = await nats.connect(url)
    payload = json.dumps({"not": "an array", "email": RAW_EMAIL}).encode()
    await nc.jetstream().publish(L.events_subject("edge-pd"), payload, headers={"Nats-Msg-Id": "edge-pd:malformed-1"})
    await nc.close()


def test_traits_and_dead_letters_leave_no_plaintext_and_files_are_private(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-pd")
    # the site's auth layer names the user; the SDK sends the traits
    identify = {"event_id": uuid.uuid4().hex, "type": "identify", "traits": {"email": EMAIL, "name": NAME, "phone": PHONE}}
    reply = fetch(
        agent.url + "/_p13n/collect",
        {
            "Content-Type": "application/json",
            "Cookie": f"p13n_id={VISITOR}; p13n_consent=analytics.personalization",
            "X-User-Id": "user-ada",
        },
        method="POST",
        data=json.dumps({"events": [identify]}).encode(),
    )
    assert reply.status == 202 and json.loads(reply.body)["accepted"] == 1, reply.text
    # a server-side identify, and an invalid one (no user id) that ends in the dead letters
    api = [
        {"event_id": uuid.uuid4().hex, "type": "identify", "user_id": "user-grace", "traits": {"email": API_EMAIL}},
        {"event_id": uuid.uuid4().hex, "type": "identify", "anonymous_id": VISITOR, "traits": {"email": DEAD_EMAIL}},
    ]
    posted = fetch(
        hub.url + "/v1/events",
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
        data=json.dumps(api).encode(),
    )
    assert posted.status == 202, posted.text
    asyncio.run(publish_malformed(nats_server))
    wait_accepted(hub, 2)
    wait_for(lambda: sum(stats(hub)["dead_letters"].values()) == 2)
    # the edge has published and deleted its copy; its WAL is truncated once drained
    wait_for(lambda: json.loads(fetch(agent.url + "/_p13n/healthz").body)["outbox_depth"] == 0)
    wait_for(lambda: plaintext_in([agent.data_dir], SECRETS) == [], timeout_s=20)
    assert plaintext_in([hub.data_dir, agent.data_dir], SECRETS) == []
    assert loose_modes([hub.data_dir, agent.data_dir]) == []

    # the access request opens it all: traits in the warehouse and the lake, dead letters
    export = json.loads(fetch(hub.url + f"/v1/subjects/{VISITOR}", hub.auth("privacy_officer")).body)
    warehouse_traits = [e["props"]["traits"] for e in export["events"] if e["type"] == "identify"]
    assert warehouse_traits == [{"email": EMAIL, "name": NAME, "phone": PHONE}]
    assert [e["traits"] for e in export["lake"] if e["type"] == "identify"] == [identify["traits"]]
    (dead,) = export["dead_letters"]
    assert dead["payload"]["traits"] == {"email": DEAD_EMAIL} and dead["reason"]
    places = {h["where"] for h in export["held_elsewhere"]}
    assert "every edge: live session" in places and "NATS dead-letter stream" in places
    grace = json.loads(fetch(hub.url + "/v1/subjects/user-grace", hub.auth("privacy_officer")).body)
    assert [e["props"]["traits"] for e in grace["events"]] == [{"email": API_EMAIL}]

    # an erasure finds the sealed dead letter through the tokens kept beside it
    erased = fetch(hub.url + f"/v1/subjects/{VISITOR}", hub.auth("privacy_officer"), method="DELETE")
    assert erased.status == 202 and json.loads(erased.body)["hub"]["warehouse.dead_letters"] == 1
