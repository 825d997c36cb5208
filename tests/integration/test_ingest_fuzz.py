"""Property-based fuzzing of /_p13n/collect and /v1/events: never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY, Agent, Hub
from tests.integration.helpers import fetch

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=6),
    max_leaves=25,
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["page_view", "click", "scroll", "purchase", "identify", "consent", "bogus"])},
    optional={
        "event_id": st.text(max_size=70),
        "url": st.text(max_size=100),
        "item_id": json_values,
        "depth": json_values,
        "ts": json_values,
        "context": json_values,
        "user_id": json_values,
        "total": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda evs: json.dumps({"events": evs}).encode(), st.lists(st.one_of(event_like, json_values), max_size=12)),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Agent, Hub]]:
    from p13n.procs import DEFAULT_TEMPLATES, free_port, p13n_command, spawn, start_nats, wait_http

    work = tmp_path_factory.mktemp("fuzz")
    nats_child, nats_port = start_nats(work / "nats")
    url = f"nats://127.0.0.1:{nats_port}"
    hp, ap = free_port(), free_port()
    hub_child = spawn(
        "hub",
        p13n_command("hub", "serve"),
        work,
        {
            "P13N_HUB_LISTEN": f"127.0.0.1:{hp}",
            "P13N_HUB_NATS_URL": url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_HUB_API_KEYS": API_KEY,
        },
    )
    agent_child = spawn(
        "edge",
        p13n_command("edge", "serve"),
        work,
        {
            "P13N_EDGE_LISTEN": f"127.0.0.1:{ap}",
            "P13N_EDGE_NATS_URL": url,
            "P13N_EDGE_DATA_DIR": str(work / "edge"),
            "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
            "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics",
        },
    )
    wait_http(hub_child, f"http://127.0.0.1:{hp}/v1/healthz", timeout_s=30)
    wait_http(agent_child, f"http://127.0.0.1:{ap}/_p13n/healthz")
    yield (
        Agent(f"http://127.0.0.1:{ap}", ap, agent_child, work / "edge"),
        Hub(f"http://127.0.0.1:{hp}", hp, hub_child, work / "hub", {}),
    )
    for child in (agent_child, hub_child, nats_child):
        child.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_collect_never_answers_5xx(fuzz_stack: tuple[Agent, Hub], body: bytes) -> None:
    agent, _ = fuzz_stack
    reply = fetch(agent.url + "/_p13n/collect", {"Content-Type": "application/json"}, method="POST", data=body)
    assert reply.status in (202, 400), reply.text
    doc = json.loads(reply.body)
    if reply.status == 202:
        assert doc["accepted"] + doc["rejected"] == len(doc["results"])
    else:
        assert set(doc["error"]) >= {"status", "reason", "detail"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_events_api_never_answers_5xx(fuzz_stack: tuple[Agent, Hub], body: bytes) -> None:
    _, hub = fuzz_stack
    reply = fetch(hub.url + "/v1/events", {"Authorization": f"Bearer {API_KEY}"}, method="POST", data=body)
    assert reply.status in (202, 400), reply.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.dictionaries(
        st.sampled_from(["e", "url", "campaign", "id", "item", "utm_source", "x"]), st.text(max_size=40), max_size=6
    )
)
def test_pixel_always_answers_a_gif(fuzz_stack: tuple[Agent, Hub], query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    agent, _ = fuzz_stack
    reply = fetch(agent.url + "/_p13n/px.gif?" + urlencode(query))
    assert reply.status == 200 and reply.body.startswith(b"GIF89a")
