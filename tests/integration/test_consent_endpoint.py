"""``/_p13n/consent``: read and set the choice; the record names the visitor; withdrawal
expires the visitor cookie; browser opt-out signals still win."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import warehouse_rows

VISITOR = "consentvisitor0000000001"


def outbox(agent_data_dir) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(agent_data_dir / "edge.sqlite3")
    try:
        return [e for r in db.execute("SELECT body FROM outbox ORDER BY seq") for e in json.loads(r[0])]
    finally:
        db.close()


def post(url: str, body: object, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return fetch(
        url + "/_p13n/consent",
        {"Content-Type": "application/json", **(headers or {})},
        method="POST",
        data=json.dumps(body).encode(),
    )


def test_consent_is_set_recorded_and_withdrawn(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", DEFAULT_CONSENT="necessary")
    assert json.loads(fetch(agent.url + "/_p13n/consent").body) == {"categories": ["necessary"], "explicit": False}

    granted = post(agent.url, {"categories": ["analytics", "personalization"]}, {"Cookie": f"p13n_id={VISITOR}"})
    assert granted.status == 200 and json.loads(granted.body)["categories"] == ["analytics", "necessary", "personalization"]
    cookies = granted.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("p13n_consent=analytics.necessary.personalization") for c in cookies)

    withdrawn = post(
        agent.url, {"categories": []}, {"Cookie": f"p13n_id={VISITOR}; p13n_consent=analytics.necessary.personalization"}
    )
    assert json.loads(withdrawn.body)["categories"] == ["necessary"]
    cookies = withdrawn.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("p13n_id=") and "Max-Age=0" in c for c in cookies)  # the identifier goes

    records = [e for e in outbox(agent.data_dir) if e["type"] == "consent"]
    assert [r["categories"] for r in records] == [["analytics", "necessary", "personalization"], ["necessary"]]
    assert all(r["anonymous_id"] == VISITOR for r in records)  # proof of each choice, for this visitor

    gpc = fetch(agent.url + "/_p13n/consent", {"Sec-GPC": "1", "Cookie": "p13n_consent=analytics.necessary.personalization"})
    assert json.loads(gpc.body)["categories"] == ["necessary"]
    assert post(agent.url, {"categories": ["tracking"]}).status == 400
    assert post(agent.url, {"nope": 1}).status == 400


def test_every_consent_change_is_recorded_at_the_hub_as_proof(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, ID="edge-proof", NATS_URL=nats_server, DEFAULT_CONSENT="necessary")
    post(agent.url, {"categories": ["analytics", "personalization"]}, {"Cookie": f"p13n_id={VISITOR}"})
    post(agent.url, {"categories": ["analytics"]}, {"Cookie": f"p13n_id={VISITOR}; p13n_consent=analytics.personalization"})
    post(agent.url, {"categories": []}, {"Cookie": f"p13n_id={VISITOR}; p13n_consent=analytics"})
    wait_for(lambda: len(warehouse_rows(hub.data_dir, "SELECT * FROM consent_log")) == 3)
    proof = warehouse_rows(hub.data_dir, "SELECT subject, categories, source, edge, ts, received_at FROM consent_log ORDER BY ts")
    assert [(s, json.loads(c), src, e) for s, c, src, e, _, _ in proof] == [
        (VISITOR, ["analytics", "necessary", "personalization"], "api", "edge-proof"),
        (VISITOR, ["analytics", "necessary"], "api", "edge-proof"),
        (VISITOR, ["necessary"], "api", "edge-proof"),  # a withdrawal is recorded too
    ]
    assert all(ts and received for *_, ts, received in proof)
    # the access request shows the same history
    export = json.loads(fetch(hub.url + f"/v1/subjects/{VISITOR}", hub.auth("privacy_officer")).body)
    assert [c["categories"] for c in export["consents"]] == [json.loads(p[1]) for p in proof]


def test_a_choice_that_allows_an_id_issues_one_once(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", DEFAULT_CONSENT="necessary")
    granted = post(agent.url, {"categories": ["analytics"], "source": "cmp"})
    issued = [c for c in granted.headers.get_all("Set-Cookie") or [] if c.startswith("p13n_id=")]
    assert len(issued) == 1 and "HttpOnly" in issued[0] and "Max-Age=31536000" in issued[0]
    visitor = issued[0].split(";", 1)[0].split("=", 1)[1]
    (record,) = [e for e in outbox(agent.data_dir) if e["type"] == "consent"]
    assert record["anonymous_id"] == visitor and record["source"] == "cmp"
    # with the id: none issued again
    again = post(agent.url, {"categories": ["analytics"]}, {"Cookie": f"p13n_id={visitor}"})
    assert not [c for c in again.headers.get_all("Set-Cookie") or [] if c.startswith("p13n_id=")]
    # "necessary" only: no id
    declined = post(agent.url, {"categories": []})
    assert not [c for c in declined.headers.get_all("Set-Cookie") or [] if c.startswith("p13n_id=") and "Max-Age=0" not in c]
    assert post(agent.url, {"categories": [], "source": "<script>"}).status == 400


def test_collect_issues_the_id_when_consent_was_given_elsewhere(origin: Origin, start_agent: AgentFactory) -> None:
    # a site whose own consent platform wrote the cookie: the SDK's first batch gets the id
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", DEFAULT_CONSENT="necessary")
    body = json.dumps({"events": [{"event_id": "firstvisit00000001", "type": "page_view", "url": "http://s.example/"}]})
    reply = fetch(
        agent.url + "/_p13n/collect",
        {"Content-Type": "application/json", "Cookie": "p13n_consent=analytics"},
        method="POST",
        data=body.encode(),
    )
    assert reply.status == 202
    (issued,) = [c for c in reply.headers.get_all("Set-Cookie") or [] if c.startswith("p13n_id=")]
    visitor = issued.split(";", 1)[0].split("=", 1)[1]
    (event,) = [e for e in outbox(agent.data_dir) if e["event_id"] == "firstvisit00000001"]
    assert event["anonymous_id"] == visitor
    # without consent for an id, none is issued and nothing is stored
    bare = fetch(
        agent.url + "/_p13n/collect",
        {"Content-Type": "application/json"},
        method="POST",
        data=body.replace("00001", "00002").encode(),
    )
    assert bare.status == 202 and not bare.headers.get_all("Set-Cookie")
