"""The moment of truth: what a visitor does in this session changes their next page,
decided at the edge from SQLite and ONNX, through nginx in both modes."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.conftest import AgentFactory, NginxFactory, Origin, TrainedBundle
from tests.integration.helpers import DESKTOP_UA, fetch, metric
from tests.integration.ingest_helpers import post_events

VISITOR = "returning0visitor00000001"


def recommended(html: str) -> list[str]:
    block = html.split('data-slot="recs"', 1)[1].split("</ul>", 1)[0]
    return re.findall(r'data-p13n-item="([^"]+)"', block)


def view_shoes(base_url: str, cookie: str) -> None:
    events = [
        {"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://shop.example/p/{item}"}
        for item in ("sh01", "sh02", "sh03")
    ]
    reply = post_events(base_url, events, {"Cookie": cookie, "User-Agent": DESKTOP_UA})
    assert reply.status == 202 and json.loads(reply.body)["accepted"] == 3


@pytest.mark.parametrize("mode", ["filter", "ssi"])
def test_three_shoe_views_change_hero_and_recommendations(
    mode: str,
    origin: Origin,
    ssi_origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_nginx_proxy: NginxFactory,
) -> None:
    shell_origin = ssi_origin if mode == "ssi" else origin
    agent = start_agent(
        shell_origin.url if mode == "ssi" else origin.url,
        MODEL_BUNDLE=str(trained_bundle.path),
        BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key),
        NATS_URL="nats://127.0.0.1:9",
        DEBUG="true",
    )
    nginx = start_nginx_proxy(mode, agent.port, shell_origin.url)
    cookie = f"p13n_id={VISITOR}"
    headers = {"User-Agent": DESKTOP_UA, "Cookie": cookie}
    before = fetch(nginx.url + "/p/dr01", headers)
    assert before.status == 200
    assert before.variants()[0] != "category-fan"
    before_recs = recommended(before.text)
    view_shoes(nginx.url, cookie)  # through nginx, as the SDK would send them
    after = fetch(nginx.url + "/p/dr01", headers)
    assert after.status == 200 and "<p13n-slot" not in after.text
    assert after.variants()[0] == "category-fan" and "More shoes, picked for you" in after.text
    after_recs = recommended(after.text)
    assert after_recs != before_recs
    assert sum(r.startswith("sh") for r in after_recs) >= 2  # the session's taste, via ALS fold-in (2 per category at most)
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_decisions_total", slot="recs", outcome="recommend") >= 2


def test_decide_endpoint_and_sticky_experiments_across_restarts(
    origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory
) -> None:
    settings = {
        "MODEL_BUNDLE": str(trained_bundle.path),
        "BUNDLE_PUBLIC_KEY": str(trained_bundle.public_key),
        "NATS_URL": "nats://127.0.0.1:9",
    }
    agent = start_agent(origin.url, **settings)
    data_dir = agent.data_dir
    assignments: dict[str, str] = {}
    for i in range(12):
        cookie = f"p13n_id=stickyvisitor{i:010d}"
        first = json.loads(fetch(agent.url + "/_p13n/decide?slots=banner,hero&page=/", {"Cookie": cookie}).body)
        again = json.loads(fetch(agent.url + "/_p13n/decide?slots=banner,hero&page=/", {"Cookie": cookie}).body)
        assert first["slots"]["banner"]["detail"] == again["slots"]["banner"]["detail"]
        assignments[cookie] = first["slots"]["banner"]["reason"] + ":" + first["slots"]["banner"]["detail"]
        assert first["model_version"] == 1 and isinstance(first["segment"], str) and first["segment"]
    depth = json.loads(fetch(agent.url + "/_p13n/healthz").body)["outbox_depth"]
    assert depth == 24  # one exposure per decision, stored for lift measurement
    agent.stop()
    again = start_agent(origin.url, DATA_DIR=str(data_dir), **settings)
    for cookie, expected in assignments.items():
        body = json.loads(fetch(again.url + "/_p13n/decide?slots=banner", {"Cookie": cookie}).body)
        assert body["slots"]["banner"]["reason"] + ":" + body["slots"]["banner"]["detail"] == expected
    assert fetch(again.url + "/_p13n/decide?slots=../x").status == 400


def test_session_survives_an_agent_restart(origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory) -> None:
    settings = {
        "MODEL_BUNDLE": str(trained_bundle.path),
        "BUNDLE_PUBLIC_KEY": str(trained_bundle.public_key),
        "NATS_URL": "nats://127.0.0.1:9",
    }
    agent = start_agent(origin.url, **settings)
    cookie = f"p13n_id={VISITOR}"
    view_shoes(agent.url, cookie)
    agent.stop()  # sessions are flushed at shutdown
    again = start_agent(origin.url, DATA_DIR=str(agent.data_dir), **settings)
    page = fetch(again.url + "/p/dr01", {"Cookie": cookie, "User-Agent": DESKTOP_UA})
    assert page.variants()[0] == "category-fan"


def test_a_slow_model_hits_the_deadline_and_the_page_still_renders(
    origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory
) -> None:
    agent = start_agent(
        origin.url,
        MODEL_BUNDLE=str(trained_bundle.path),
        BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key),
        NATS_URL="nats://127.0.0.1:9",
        DECISION_DEADLINE_MS="0.001",
    )
    cookie = f"p13n_id={VISITOR}"
    view_shoes(agent.url, cookie)
    page = fetch(agent.url + "/p/dr01", {"Cookie": cookie, "User-Agent": DESKTOP_UA})
    assert page.status == 200 and "<p13n-slot" not in page.text
    assert page.variants()[:2] == ["fallback", "fallback"]
    assert metric(fetch(agent.url + "/_p13n/metrics").text, "p13n_edge_fallbacks_total", reason="deadline") >= 3


def test_a_tampered_model_bundle_is_refused_and_the_agent_serves_without_models(
    origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(trained_bundle.path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    agent = start_agent(
        origin.url, MODEL_BUNDLE=str(bad), BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key), NATS_URL="nats://127.0.0.1:9"
    )
    body = json.loads(fetch(agent.url + "/_p13n/decide?slots=recs&page=/p/dr01").body)
    assert body["model_version"] is None and body["slots"]["recs"]["detail"] == "popular"
    assert "refused" in agent.child.log()
