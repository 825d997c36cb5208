"""``/_p13n/consent``: read and set the choice; the record names the visitor; withdrawal
expires the visitor cookie; browser opt-out signals still win."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import AgentFactory, Origin
from tests.integration.helpers import fetch

VISITOR = "consentvisitor0000000001"


def outbox(agent_data_dir) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(agent_data_dir / "edge.sqlite3")
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT body FROM outbox ORDER BY seq")]
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
