"""The consent matrix on a real agent with a real model bundle, path by path.

For each consent state a visitor views three shoes (collect) and then opens a page
(filter mode) and the SPA decision endpoint:

* without ``analytics`` nothing of the visitor reaches the outbox (so nothing can reach
  the hub), the pixel stores nothing and experiment exposures are not recorded;
* without ``personalization`` the page is decided from request context only (the
  session is neither written nor read: the hero stays the anonymous one);
* with neither, no identifying cookie is set; ``Sec-GPC``/``DNT`` override any cookie;
* a consent platform's TC string (``euconsent-v2``) grants what its purposes allow,
  wins over our own cookie, and an unreadable one grants nothing (counted).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.conftest import AgentFactory, Origin, TrainedBundle
from tests.integration.helpers import DESKTOP_UA, fetch, metric
from tests.integration.ingest_helpers import post_events
from tests.unit.test_tcf import encode

ALL_PURPOSES = encode(set(range(1, 11)))
CASES = {
    # name: (consent cookies, extra headers, analytics, personalization)
    "necessary-only": ("p13n_consent=none", {}, False, False),
    "gpc-overrides-cookie": ("p13n_consent=analytics.personalization", {"Sec-GPC": "1"}, False, False),
    "dnt-overrides-cookie": ("p13n_consent=analytics.personalization", {"DNT": "1"}, False, False),
    "analytics-only": ("p13n_consent=analytics", {}, True, False),
    "personalization-only": ("p13n_consent=personalization", {}, False, True),
    "both": ("p13n_consent=analytics.personalization", {}, True, True),
    # a consent platform's TC string in its cookie (docs/PRIVACY.md: the order of signals)
    "tcf-all-purposes": (f"euconsent-v2={ALL_PURPOSES}", {}, True, True),
    "tcf-content-purposes": (f"euconsent-v2={encode({1, 5, 6})}", {}, False, True),
    "tcf-measurement-purposes": (f"euconsent-v2={encode({1, 8, 9, 10})}", {}, True, False),
    "tcf-over-our-cookie": (f"euconsent-v2={encode({1, 5, 6})}; p13n_consent=analytics.personalization", {}, False, True),
    "gpc-overrides-tcf": (f"euconsent-v2={ALL_PURPOSES}", {"Sec-GPC": "1"}, False, False),
    "tcf-malformed": ("euconsent-v2=COv_!!broken; p13n_consent=analytics.personalization", {}, False, False),
    # a GPP string: its US National opt-out withholds marketing only, its GPC flag everything
    "gpp-opt-out": ("__gpp=DBABL~BVVVkkkkkpFY; p13n_consent=analytics.personalization.marketing", {}, True, True),
    "gpp-gpc": ("__gpp=DBABL~BVVVkkkkkpFY.YA; p13n_consent=analytics.personalization", {}, False, False),
    "gpp-malformed": ("__gpp=DBABL~!!; p13n_consent=analytics.personalization", {}, False, False),
}


def outbox_for(data_dir: Path, visitor: str) -> list[dict[str, object]]:
    db = sqlite3.connect(data_dir / "edge.sqlite3")
    try:
        rows = [e for r in db.execute("SELECT body FROM outbox") for e in json.loads(r[0])]
    finally:
        db.close()
    return [r for r in rows if r.get("anonymous_id") == visitor]


@pytest.fixture(scope="module")
def agent_env(trained_bundle: TrainedBundle) -> dict[str, str]:
    return {
        "MODEL_BUNDLE": str(trained_bundle.path),
        "BUNDLE_PUBLIC_KEY": str(trained_bundle.public_key),
        "NATS_URL": "nats://127.0.0.1:9",  # nothing drains the outbox: what is stored stays visible
        "DEFAULT_CONSENT": "necessary",
    }


@pytest.mark.parametrize("case", list(CASES))
def test_consent_matrix(case: str, origin: Origin, start_agent: AgentFactory, agent_env: dict[str, str]) -> None:
    choice, extra, analytics, personalization = CASES[case]
    agent = start_agent(origin.url, **agent_env)
    visitor = f"matrix{case.replace('-', '')}"[:24].ljust(24, "0")
    headers = {"User-Agent": DESKTOP_UA, "Cookie": f"p13n_id={visitor}; {choice}", **extra}

    views = [
        {"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://shop.example/p/{i}"}
        for i in ("sh01", "sh02", "sh03")
    ]
    body = json.loads(post_events(agent.url, views, headers).body)
    statuses = {r["status"] for r in body["results"]}
    assert statuses == ({"accepted"} if analytics else {"session_only"} if personalization else {"rejected"})
    outcome = "accepted" if analytics else "session_only" if personalization else "rejected"
    assert metric(fetch(agent.url + "/_p13n/metrics").text, "p13n_edge_events_total", outcome=outcome) == 3
    pixel = fetch(agent.url + "/_p13n/px.gif?e=email_open&campaign=spring", headers)
    assert pixel.status == 200 and pixel.headers["content-type"] == "image/gif"

    page = fetch(agent.url + "/p/dr01", headers)
    assert page.status == 200
    # the session changes the hero only when personalization is allowed
    assert (page.variants()[0] == "category-fan") is personalization
    decided = json.loads(fetch(agent.url + "/_p13n/decide?slots=hero,recs&page=/p/dr01", headers).body)
    assert ('data-variant="category-fan"' in decided["slots"]["hero"]["html"]) is personalization

    stored = outbox_for(agent.data_dir, visitor)
    if analytics:
        kinds = sorted(str(e["type"]) for e in stored)
        assert kinds.count("page_view") == 3 and "email_open" in kinds
    else:
        assert stored == []  # nothing of the visitor: not the views, not the pixel, not exposures

    # a first visit without a cookie: an identifier only when a consented purpose needs it
    fresh = {k: v for k, v in headers.items() if k != "Cookie"}
    fresh["Cookie"] = choice
    first = fetch(agent.url + "/p/dr01", fresh)
    cookies = first.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("p13n_id=") for c in cookies) is (analytics or personalization)
    if case == "gpp-opt-out":  # the effective consent keeps everything but marketing
        effective = json.loads(fetch(agent.url + "/_p13n/consent", headers).body)["categories"]
        assert effective == ["analytics", "necessary", "personalization"]
    if case == "tcf-malformed":  # treated as no consent, and counted with its reason
        text = fetch(agent.url + "/_p13n/metrics").text
        assert 'p13n_edge_tcf_invalid_total{reason="bad_base64"}' in text
