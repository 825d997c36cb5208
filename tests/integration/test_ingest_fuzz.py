"""Property-based fuzzing of every way events come in: /_p13n/collect, the pixel and
/v1/events never answer a 5xx; events collected at the edge or published straight to
NATS (as a hostile edge would) are followed end to end: each one is in the warehouse
or in the dead letters, the hub's counters reconcile, and no message is delivered more
than the bound. The module prints its case count."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import nats_layout as L
from tests.conftest import API_KEY, Agent, Hub
from tests.integration.helpers import fetch
from tests.integration.ingest_helpers import stats, warehouse_rows

#: What the fuzz did, printed at the end of the module.
TALLY: Counter[str] = Counter()
#: The fuzz stack's NATS URL (for publishing as an edge).
FUZZ_NATS: dict[str, str] = {}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=6),
    max_leaves=25,
)
#: URLs that broke normalization before (an out-of-range port raised outside the try).
hostile_urls = st.one_of(
    st.text(max_size=100),
    st.sampled_from(["http://h:99999/", "http://[::1", "https://x:-1/", "http://h:abc/", "http://[::1]:8080/p?utm_source=a#f"]),
    st.builds(lambda port: f"http://shop.example:{port}/p/x", st.integers(min_value=-5, max_value=10**6)),
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["page_view", "click", "scroll", "purchase", "identify", "consent", "bogus"])},
    optional={
        "event_id": st.text(max_size=70),
        "url": hostile_urls,
        "item_id": json_values,
        "depth": json_values,
        "ts": json_values,
        "context": json_values,
        "user_id": json_values,
        "total": json_values,
        "received_at": st.one_of(json_values, st.sampled_from(["2001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])),
        "edge": st.text(max_size=20),
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
    FUZZ_NATS["url"] = url
    hp, ap = free_port(), free_port()
    from tests.conftest import role_tokens

    tokens_file = work / "tokens.json"
    tokens = role_tokens(tokens_file)
    hub_child = spawn(
        "hub",
        p13n_command("hub", "serve"),
        work,
        {
            "P13N_HUB_LISTEN": f"127.0.0.1:{hp}",
            "P13N_HUB_NATS_URL": url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_API_KEYS": API_KEY,
            "P13N_HUB_TOKENS_FILE": str(tokens_file),
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
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
            "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics",
        },
    )
    wait_http(hub_child, f"http://127.0.0.1:{hp}/v1/healthz", timeout_s=30)
    wait_http(agent_child, f"http://127.0.0.1:{ap}/_p13n/healthz")
    yield (
        Agent(f"http://127.0.0.1:{ap}", ap, agent_child, work / "edge"),
        Hub(f"http://127.0.0.1:{hp}", hp, hub_child, work / "hub", tokens),
    )
    for child in (agent_child, hub_child, nats_child):
        child.stop()


def fuzz_summary() -> str:
    """The line ``tests/conftest.py`` prints at the end of a run that fuzzed."""
    if not TALLY:
        return ""
    cases = ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items()) if k not in ("5xx", "unaccounted"))
    return f"ingest fuzz: {cases}; 5xx {TALLY['5xx']}, events unaccounted {TALLY['unaccounted']}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_collect_never_answers_5xx(fuzz_stack: tuple[Agent, Hub], body: bytes) -> None:
    agent, _ = fuzz_stack
    reply = fetch(agent.url + "/_p13n/collect", {"Content-Type": "application/json"}, method="POST", data=body)
    TALLY["collect cases"] += 1
    TALLY["5xx"] += reply.status >= 500
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
    TALLY["events API cases"] += 1
    TALLY["5xx"] += reply.status >= 500
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
    TALLY["pixel cases"] += 1
    TALLY["5xx"] += reply.status >= 500
    assert reply.status == 200 and reply.body.startswith(b"GIF89a")


#: One NATS message as a hostile edge may publish it: junk, JSON that is not an array,
#: or an array of events (with ids the test follows) mixed with junk.
nats_messages = st.one_of(
    st.binary(max_size=200).map(lambda b: ("junk", b)),
    json_values.filter(lambda v: not isinstance(v, list)).map(lambda v: ("junk", json.dumps(v).encode())),
    st.lists(st.one_of(event_like, event_like, json_values), min_size=1, max_size=10).map(lambda evs: ("events", evs)),
)


def _tracked(events: list[Any]) -> tuple[list[Any], list[str]]:
    """Gives most event objects a fresh id (so examples never collide) and returns them."""
    ids: list[str] = []
    out: list[Any] = []
    for i, event in enumerate(events):
        if isinstance(event, dict) and i % 4 != 3:
            event = {**event, "event_id": uuid.uuid4().hex}
            ids.append(event["event_id"])
        out.append(event)
    return out, ids


async def _publish(url: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    for payload in payloads:
        await js.publish(L.events_subject("fuzz-edge"), payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
    await nc.close()


def _counts(hub: Hub) -> dict[str, int]:
    doc = stats(hub)
    dead = dict(doc["dead_letters"])
    return {
        "received": doc["received"],
        "settled": doc["accepted"]
        + doc["duplicates_dropped"]
        + doc["suppressed"]
        + sum(v for k, v in dead.items() if k != "malformed_message"),
        "malformed": dead.get("malformed_message", 0),
    }


def _quiet(agent: Agent, hub: Hub) -> dict[str, int]:
    """The hub's counts once nothing is in flight (earlier cases' events drained)."""
    deadline = time.monotonic() + 30
    last = _counts(hub)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        outbox = json.loads(fetch(agent.url + "/_p13n/healthz").body)["outbox_depth"]
        consumer = stats(hub)["consumer"]
        now = _counts(hub)
        if outbox == 0 and consumer.get("pending_messages") == 0 and consumer.get("unacked_messages") == 0 and now == last:
            return now
        last = now
    raise AssertionError("ingest never went quiet")


def _unaccounted(hub: Hub, ids: list[str]) -> list[str]:
    stored = {r[0] for r in warehouse_rows(hub.data_dir, "SELECT event_id FROM events")}
    from hub.personal import open_dead_letter
    from hub.pii import PiiCipher

    cipher = PiiCipher.from_settings("", "", hub.data_dir)  # the hub's development key ring (sealed payloads)
    dead = " ".join(open_dead_letter(r[0], cipher) for r in warehouse_rows(hub.data_dir, "SELECT raw FROM dead_letters"))
    return [i for i in ids if i not in stored and i not in dead]


# large nested inputs by design (many NATS messages of many events each): hypothesis's
# entropy budget per example is smaller than that, so its size health check is off
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages=st.lists(nats_messages, min_size=5, max_size=15), via_collect=st.lists(event_like, min_size=1, max_size=10))
def test_every_event_lands_in_the_warehouse_or_the_dead_letters(
    fuzz_stack: tuple[Agent, Hub], messages: list[tuple[str, Any]], via_collect: list[dict[str, Any]]
) -> None:
    agent, hub = fuzz_stack
    before = _quiet(agent, hub)
    payloads: list[bytes] = []
    ids: list[str] = []
    elements = junk = 0
    for kind, content in messages:
        if kind == "junk":
            payloads.append(content)
            junk += 1
        else:
            events, tracked = _tracked(content)
            payloads.append(json.dumps(events).encode())
            ids += tracked
            elements += len(events)
    asyncio.run(_publish(FUZZ_NATS["url"], payloads))
    # through the edge too: what it accepts must arrive
    collected, _ = _tracked(via_collect)
    reply = fetch(
        agent.url + "/_p13n/collect",
        {"Content-Type": "application/json"},
        method="POST",
        data=json.dumps({"events": collected}).encode(),
    )
    TALLY["5xx"] += reply.status >= 500
    assert reply.status == 202, reply.text
    accepted = [r["event_id"] for r in json.loads(reply.body)["results"] if r["status"] == "accepted"]
    ids += accepted
    elements += len(accepted)

    deadline = time.monotonic() + 30
    now = before
    while time.monotonic() < deadline:
        now = _counts(hub)
        if now["received"] - before["received"] >= elements and now["malformed"] - before["malformed"] >= junk:
            break
        time.sleep(0.1)
    received = now["received"] - before["received"]
    assert received == elements and now["malformed"] - before["malformed"] == junk, (now, before, elements, junk)
    assert now["settled"] - before["settled"] == received  # accepted + duplicates + suppressed + dead letters
    lost = _unaccounted(hub, ids)
    TALLY["NATS cases"] += 1
    TALLY["events followed"] += len(ids)
    TALLY["unaccounted"] += len(lost)
    assert lost == []
    consumer = stats(hub)["consumer"]
    assert 1 <= consumer["max_deliveries"] <= consumer["delivery_bound"]
    assert consumer["dead_lettered_messages"] == 0  # one bad event never fails its message
