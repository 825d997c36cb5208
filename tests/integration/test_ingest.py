"""Collection at the edge → outbox → NATS → hub → lake, warehouse, marts."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import jwt

from tests.conftest import API_KEY, AgentFactory, HubFactory, Origin
from tests.integration.helpers import DESKTOP_UA, MOBILE_UA, fetch, metric
from tests.integration.ingest_helpers import hub_rows, page_view, post_events, stats, wait_accepted, warehouse_rows

SITE_SECRET = "site-backend-signing-secret-0123456789"


def test_events_flow_to_every_tier_enriched_and_normalized(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-a", IDENTITY_SECRET=SITE_SECRET)
    # the site backend signs who is logged in; the SDK passes the token (p13n.identify)
    login = jwt.encode({"sub": "alice@example.com", "exp": time.time() + 300}, SITE_SECRET, algorithm="HS256")
    events = [
        page_view(
            "https://Shop.Example:443/p/dr01?utm_source=news&utm_campaign=winter&gclid=x&size=m",
            referrer="https://www.google.com/search?q=dress",
        ),
        {"event_id": uuid.uuid4().hex, "type": "click", "item_id": "sh02"},
        {"event_id": uuid.uuid4().hex, "type": "scroll", "depth": 33},  # invalid depth
        {
            "event_id": uuid.uuid4().hex,
            "type": "purchase",
            "order_id": "o-1",
            "items": [{"item_id": "sh02", "quantity": 1, "price": {"amount": 19.99, "currency": "eur"}}],
            "total": {"amount": 19.99, "currency": "eur"},
        },
        {"event_id": uuid.uuid4().hex, "type": "identify", "user_token": login},
        "not an event",
    ]
    headers = {"User-Agent": MOBILE_UA, "X-Geo-Country": "de", "Cookie": "p13n_id=visitor000000000000001"}
    reply = post_events(agent.url, events, headers)
    assert reply.status == 202
    body = json.loads(reply.body)
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted", "rejected", "accepted", "accepted", "rejected"]
    assert body["results"][2]["reason"] == "invalid" and "depth" in body["results"][2]["detail"]
    assert body["results"][5]["reason"] == "not_an_object"
    s = wait_accepted(hub, 4)
    assert s["accepted"] == 4 and s["duplicates_dropped"] == 0
    rows = {
        r[0]: r
        for r in warehouse_rows(
            hub.data_dir, "SELECT type, url, context, anonymous_id, user_id, amount_minor, currency, edge FROM events"
        )
    }
    pv = rows["page_view"]
    assert pv[1] == "https://shop.example/p/dr01?size=m"  # canonical, tracking removed
    ctx = json.loads(pv[2])
    assert (
        ctx["device"] == "mobile" and ctx["country"] == "DE" and ctx["utm_source"] == "news" and ctx["utm_campaign"] == "winter"
    )
    assert ctx["referrer_domain"] == "www.google.com" and "ip" not in ctx
    assert pv[3] == "visitor000000000000001" and pv[7] == "edge-a"
    assert rows["purchase"][5] == 1999 and rows["purchase"][6] == "EUR"
    identify_user = rows["identify"][4]
    assert identify_user.startswith("p1_") and "alice" not in identify_user  # pseudonymized at the edge
    assert warehouse_rows(hub.data_dir, "SELECT anonymous_id, user_id FROM identities") == [
        ("visitor000000000000001", identify_user)
    ]
    # the lake holds the raw accepted events, the marts the aggregates
    assert s["rows"]["lake.raw_events"] == 4 and s["rows"]["lake.files"] == 1
    deadline_stats = wait_marts(hub)
    assert deadline_stats["rows"]["marts.item_popularity"] >= 1
    raw = sqlite3.connect(next(hub.data_dir.glob("lake/events-*.sqlite"))).execute("SELECT body FROM raw_events").fetchall()
    assert not any("alice" in r[0] for r in raw)
    assert not any(login in r[0] for r in raw)  # the token is a credential: never stored


def wait_marts(hub_url: str) -> dict[str, object]:
    import time

    for _ in range(100):
        s = stats(hub_url)
        if s["rows"]["marts.user_features"]:
            return s
        time.sleep(0.1)
    raise AssertionError("marts never refreshed")


def test_same_events_twice_are_stored_once(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory, hub_backend: dict[str, str]
) -> None:
    """On each storage backend (SQLite files, PostgreSQL)."""
    hub = start_hub(nats_server, **hub_backend)
    agent = start_agent(origin.url, NATS_URL=nats_server)
    events = [page_view() for _ in range(5)]
    assert post_events(agent.url, events).status == 202
    wait_accepted(hub, 5)
    assert post_events(agent.url, events).status == 202
    import time

    deadline = time.monotonic() + 20
    while stats(hub)["duplicates_dropped"] < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    s = stats(hub)
    assert s["accepted"] == 5 and s["duplicates_dropped"] == 5 and s["received"] == 10
    assert hub_rows(hub, "SELECT count(*) FROM events") == [(5,)]


def test_bad_requests_get_clear_4xx(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9")
    big = fetch(
        agent.url + "/_p13n/collect", {"Content-Type": "application/json"}, method="POST", data=b"[" + b'"x",' * 100_000 + b'"x"]'
    )
    assert big.status == 413 and json.loads(big.body)["error"]["reason"] == "body_too_large"
    bad = fetch(agent.url + "/_p13n/collect", {"Content-Type": "application/json"}, method="POST", data=b'{"events": [')
    assert bad.status == 400 and json.loads(bad.body)["error"]["reason"] == "malformed_json"
    many = post_events(agent.url, [page_view() for _ in range(101)])
    assert many.status == 400 and json.loads(many.body)["error"]["reason"] == "too_many_events"
    shape = fetch(agent.url + "/_p13n/collect", {"Content-Type": "application/json"}, method="POST", data=b'{"nope": 1}')
    assert shape.status == 400 and json.loads(shape.body)["error"]["reason"] == "no_events"


def test_full_outbox_answers_503_and_keeps_what_it_has(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", OUTBOX_MAX_EVENTS="5")
    assert post_events(agent.url, [page_view() for _ in range(4)]).status == 202
    full = post_events(agent.url, [page_view() for _ in range(2)])
    assert full.status == 503 and full.headers["Retry-After"] == "5"
    health = json.loads(fetch(agent.url + "/_p13n/healthz").body)
    assert health["outbox_depth"] == 4 and health["nats"] == "disconnected"
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_collect_rejected_total", reason="outbox_full") == 1
    assert metric(text, "p13n_edge_outbox_depth") == 4


def test_without_analytics_consent_nothing_is_stored(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9")
    for headers in ({"DNT": "1"}, {"Sec-GPC": "1"}, {"Cookie": "p13n_consent=personalization"}):
        body = json.loads(
            post_events(
                agent.url, [page_view(), {"event_id": uuid.uuid4().hex, "type": "consent", "categories": ["necessary"]}], headers
            ).body
        )
        # never stored; with personalization consent it only feeds the live session
        status = "session_only" if "personalization" in headers.get("Cookie", "") else "rejected"
        assert body["results"][0] == {"index": 0, "status": status, "reason": "no_consent"}
        assert body["results"][1]["status"] == "accepted"  # the record of the choice itself
    assert json.loads(fetch(agent.url + "/_p13n/healthz").body)["outbox_depth"] == 3


def test_pixel_always_answers_a_gif_and_records_valid_events(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server)
    ok = fetch(agent.url + "/_p13n/px.gif?e=email_open&campaign=winter-sale&utm_source=newsletter", {"User-Agent": DESKTOP_UA})
    bad = fetch(agent.url + "/_p13n/px.gif?e=nonsense")
    for reply in (ok, bad):
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/gif" and reply.body.startswith(b"GIF89a")
        assert "no-store" in reply.headers["Cache-Control"]
    wait_accepted(hub, 1)
    ((kind, props, context),) = warehouse_rows(hub.data_dir, "SELECT type, props, context FROM events")
    assert kind == "email_open" and json.loads(props)["campaign"] == "winter-sale"
    assert json.loads(context)["utm_source"] == "newsletter"


def test_server_side_events_api_needs_a_key(nats_server: str, start_hub: HubFactory) -> None:
    hub = start_hub(nats_server)
    events = {
        "events": [
            {
                "type": "purchase",
                "order_id": "o9",
                "user_id": "crm-42",
                "items": [{"item_id": "dr01"}],
                "total": {"amount": 1500, "currency": "JPY"},
            }
        ]
    }
    denied = fetch(hub.url + "/v1/events", {"Content-Type": "application/json"}, method="POST", data=json.dumps(events).encode())
    assert denied.status == 401 and json.loads(denied.body)["error"]["reason"] == "unauthorized"
    ok = fetch(hub.url + "/v1/events", {"Authorization": f"Bearer {API_KEY}"}, method="POST", data=json.dumps(events).encode())
    assert ok.status == 202 and json.loads(ok.body)["accepted"] == 1
    ((user, amount, currency),) = warehouse_rows(hub.data_dir, "SELECT user_id, amount_minor, currency FROM events")
    assert user.startswith("p1_") and amount == 1500 and currency == "JPY"  # yen have no minor unit
    bad = fetch(hub.url + "/v1/events", {"X-API-Key": API_KEY}, method="POST", data=b"{oops")
    assert bad.status == 400
