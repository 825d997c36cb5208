"""A hostile visitor claims to be someone else: every unproven claim is dropped and
counted; the site's auth layer (trusted header behind nginx) and tokens signed by the
site backend are the only sources of a user id."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt

from models.pseudonym import pseudonym
from tests.conftest import AgentFactory, HubFactory, NginxFactory, Origin
from tests.integration.helpers import fetch, metric
from tests.integration.ingest_helpers import post_events, wait_accepted, warehouse_rows

SECRET = "site-backend-secret-for-identity-0001"
KEY = "identity-test-pseudonym-key"
ATTACKER = "visitorAttacker000000001"


def ev(kind: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": kind, "url": "https://shop.example/p/dr01", **extra}


def statuses(reply: Any) -> list[tuple[str, str]]:
    return [(r["status"], r.get("reason", "")) for r in json.loads(reply.body)["results"]]


def test_only_proven_user_ids_are_believed(
    nats_server: str, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    hub = start_hub(nats_server, PSEUDONYM_KEY=KEY)
    agent = start_agent(origin.url, NATS_URL=nats_server, PSEUDONYM_KEY=KEY, IDENTITY_SECRET=SECRET, IDENTITY_AUDIENCE="p13n")
    cookie = {"Cookie": f"p13n_id={ATTACKER}"}
    victim = pseudonym("victim@example.com", KEY.encode())

    # 1. claims in events: the identify is refused, the page view kept without the claim
    claims = post_events(
        agent.url, [ev("identify", user_id="victim@example.com"), ev("page_view", user_id="victim@example.com")], cookie
    )
    assert statuses(claims) == [("rejected", "unproven_identity"), ("accepted", "")]
    # 2. forged, expired or other-audience tokens prove nothing
    forged = jwt.encode(
        {"sub": "victim@example.com", "exp": time.time() + 60, "aud": "p13n"},
        "attacker-secret-0000000000000000000000",
        algorithm="HS256",
    )
    expired = jwt.encode({"sub": "victim@example.com", "exp": time.time() - 60, "aud": "p13n"}, SECRET, algorithm="HS256")
    other = jwt.encode({"sub": "victim@example.com", "exp": time.time() + 60, "aud": "crm"}, SECRET, algorithm="HS256")
    tokens = post_events(agent.url, [ev("identify", user_token=t) for t in (forged, expired, other)], cookie)
    assert statuses(tokens) == [
        ("rejected", "bad_identity_token"),
        ("rejected", "expired_identity_token"),
        ("rejected", "bad_identity_token"),
    ]
    # 3. nginx overwrites a visitor's user and geo headers: nothing of them reaches the agent
    nginx = start_nginx_proxy("filter", agent.port, origin.url)
    via_nginx = post_events(
        nginx.url, [ev("identify"), ev("page_view")], {**cookie, "X-User-Id": "victim@example.com", "X-Geo-Country": "ZZ"}
    )
    assert statuses(via_nginx) == [("rejected", "unproven_identity"), ("accepted", "")]
    wait_accepted(hub, 2)
    rows = warehouse_rows(hub.data_dir, "SELECT user_id, context FROM events WHERE anonymous_id = ?", (ATTACKER,))
    assert len(rows) == 2 and all(r[0] is None for r in rows) and all('"ZZ"' not in (r[1] or "") for r in rows)
    assert warehouse_rows(hub.data_dir, "SELECT * FROM identities WHERE user_id = ?", (victim,)) == []
    scraped = fetch(agent.url + "/_p13n/metrics").text
    assert metric(scraped, "p13n_edge_identity_rejected_total", reason="unproven_identity") == 2
    assert metric(scraped, "p13n_edge_identity_rejected_total", reason="unproven_claim") == 1

    # the real user: a token the site backend signed links the visitor, and is never stored
    login = jwt.encode({"sub": "carol@example.com", "exp": time.time() + 120, "aud": "p13n"}, SECRET, algorithm="HS256")
    proven = post_events(agent.url, [ev("identify", user_token=login)], {"Cookie": "p13n_id=visitorCarol0000000000001"})
    assert statuses(proven) == [("accepted", "")]
    wait_accepted(hub, 3)
    carol = pseudonym("carol@example.com", KEY.encode())
    assert warehouse_rows(hub.data_dir, "SELECT anonymous_id FROM identities WHERE user_id = ?", (carol,)) == [
        ("visitorCarol0000000000001",)
    ]
    assert not warehouse_rows(hub.data_dir, "SELECT 1 FROM events WHERE props LIKE ?", (f"%{login[:40]}%",))


def test_the_user_header_counts_from_a_trusted_proxy_only(origin: Origin, start_agent: AgentFactory) -> None:
    # this agent trusts only a proxy at 10.9.9.9: the test client on loopback is a stranger
    agent = start_agent(origin.url, TRUSTED_PROXIES="10.9.9.9/32")
    headers = {"Cookie": f"p13n_id={ATTACKER}", "X-User-Id": "victim@example.com", "X-Geo-Country": "de"}
    reply = post_events(agent.url, [ev("identify")], headers)
    assert statuses(reply) == [("rejected", "unproven_identity")]
    page = fetch(agent.url + "/p/ja02", {"X-Geo-Country": "de"})
    assert "dach-winter" not in page.variants()  # the German hero needs a trusted country
    assert metric(fetch(agent.url + "/_p13n/metrics").text, "p13n_edge_untrusted_headers_dropped_total") == 2
    # the same request from a trusted proxy (loopback is trusted by default) names the user
    trusting = start_agent(origin.url)
    assert statuses(post_events(trusting.url, [ev("identify")], headers)) == [("accepted", "")]
    assert fetch(trusting.url + "/p/ja02", {"X-Geo-Country": "de"}).variants()[0] == "dach-winter"
