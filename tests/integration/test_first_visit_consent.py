"""A first visit under the strict default (``necessary``): the visitor opts in and
browses. The opt-in issues the visitor id, so the consent record, every event after it
and the profile the hub sends back to the edge all name that visitor."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import fetch, metric, wait_for
from tests.integration.ingest_helpers import wait_accepted, warehouse_rows

PRODUCTS = ("sh01", "sh02", "sh03")  # one category


def edge_profile(data_dir: Path, subject: str) -> dict[str, object] | None:
    db = sqlite3.connect(f"file:{data_dir / 'edge.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT data FROM profiles WHERE subject = ?", (subject,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def test_opting_in_on_the_first_visit_attributes_everything(
    browser: object, nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server, PROFILE_SYNC_S="0.3")
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-first", DEFAULT_CONSENT="necessary")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(agent.url + "/")
    page.wait_for_function("window.p13n !== undefined")
    assert [c["name"] for c in context.cookies()] == []  # nothing before a choice

    # the shop's consent banner (templates/pages): shown before a choice, gone after
    assert page.is_visible("#p13n-consent")
    page.click("#p13n-consent [data-consent=all]")
    assert not page.is_visible("#p13n-consent")
    page.wait_for_function("document.cookie.indexOf('p13n_consent=') >= 0")
    wait_for(lambda: any(c["name"] == "p13n_id" for c in context.cookies()), timeout_s=10)
    visitor = next(c["value"] for c in context.cookies() if c["name"] == "p13n_id")
    for item in PRODUCTS:
        page.goto(f"{agent.url}/p/{item}")
        page.wait_for_function("window.p13n !== undefined")
        page.evaluate("window.p13n.flush()")
    page.goto("about:blank")
    # the home page view (waiting for the choice), the consent record, three product
    # views, and the time spent on each of the four pages (sent when leaving it)
    wait_accepted(hub, 9, timeout_s=30)
    time.sleep(1.0)
    rows = warehouse_rows(hub.data_dir, "SELECT type, anonymous_id FROM events")
    assert Counter(t for t, _ in rows) == Counter({"consent": 1, "page_view": 4, "time_on_page": 4})
    assert {a for _, a in rows} == {visitor}  # every event attributed, none with no subject
    proof = [
        (s, json.loads(c), src)
        for s, c, src in warehouse_rows(hub.data_dir, "SELECT subject, categories, source FROM consent_log")
    ]
    assert proof == [(visitor, ["analytics", "marketing", "necessary", "personalization"], "banner")]  # "Accept all"
    # one id for the whole visit: issued once, by the consent call
    assert metric(fetch(agent.url + "/_p13n/metrics").text, "p13n_edge_visitor_ids_issued_total") == 1

    # the visitor's profile (built at the hub from those events) reaches the edge
    wait_for(lambda: (edge_profile(agent.data_dir, visitor) or {}).get("views") == 4, timeout_s=30)
    context.close()
