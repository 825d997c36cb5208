"""Several agent worker processes behind one port (``P13N_EDGE_WORKERS=2``).

Every request here opens its own connection, so the kernel hands it to either worker;
``P13N_EDGE_DEBUG`` makes each answer name its worker (``X-P13N-Worker``), and the
tests check that both directions (written by one worker, read by the other) happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any

from p13n.procs import DEFAULT_TEMPLATES
from tests.conftest import AgentFactory, HubFactory, NginxFactory, Origin, TrainedBundle
from tests.integration.helpers import DESKTOP_UA, fetch, metric, wait_for
from tests.integration.ingest_helpers import wait_accepted
from tests.integration.privacy_helpers import files_containing

VISITOR = "visitorWorkers0000000001"
CONSENT = "necessary.analytics.personalization"
KEY = "workers-test-key"


def templates_with_counter(tmp_path: Path) -> Path:
    """The stock templates plus a slot ``count`` showing the visitor's session views."""
    out = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, out)
    slots = json.loads((out / "slots.json").read_text())
    slots["count"] = {
        "kind": "variant",
        "variants": [{"id": "seen", "when": {"views": {"$gte": 1}}, "fragment": "count-seen"}],
        "default": "count-none",
    }
    (out / "slots.json").write_text(json.dumps(slots))
    (out / "fragments" / "count-seen.html").write_text("<b>{{views}}</b>")
    (out / "fragments" / "count-none.html").write_text("<b>0</b>")
    return out


def headers(visitor: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Cookie": f"p13n_id={visitor}; p13n_consent={CONSENT}"}


def collect(url: str, visitor: str, n: int = 1, path: str = "/p/dr01", retry: bool = False) -> tuple[dict[str, Any], str]:
    """``retry``: send again a batch whose connection broke before an answer (as the SDK does)."""
    events = [{"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://shop.example{path}"} for _ in range(n)]
    for attempt in range(5):
        try:
            reply = fetch(url + "/_p13n/collect", headers(visitor), method="POST", data=json.dumps({"events": events}).encode())
            break
        except (ConnectionError, urllib.error.URLError):
            if not retry or attempt == 4:
                raise
            time.sleep(0.2)
    assert reply.status == 202, reply.text
    return json.loads(reply.body), reply.headers["x-p13n-worker"]


def decide(url: str, visitor: str, slot: str) -> tuple[str, str]:
    reply = fetch(url + f"/_p13n/decide?slots={slot}&page=/", headers(visitor))
    assert reply.status == 200, reply.text
    return str(json.loads(reply.body)["slots"][slot]["html"]), reply.headers["x-p13n-worker"]


def views(url: str, visitor: str) -> tuple[int, str]:
    html, worker = decide(url, visitor, "count")
    found = re.fullmatch(r"<b>(\d+)</b>", html)
    assert found, html
    return int(found.group(1)), worker


def health(url: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(url + "/_p13n/healthz").body)
    return data


def each_worker(url: str, ask: Any, workers: int = 2, tries: int = 200) -> dict[str, Any]:
    """``ask()`` → (answer, worker) until every worker has answered: worker → answer."""
    seen: dict[str, Any] = {}
    for _ in range(tries):
        answer, worker = ask()
        seen[worker] = answer
        if len(seen) == workers:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered in {tries} requests")


def test_the_next_request_reflects_the_last_event_whichever_worker_takes_it(
    origin: Origin, start_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = start_agent(origin.url, WORKERS="2", DEBUG="true", TEMPLATES_DIR=str(templates_with_counter(tmp_path)))
    assert health(agent.url)["workers"] == 2
    crossings: set[tuple[str, str]] = set()
    sent = 0
    for _ in range(200):
        _, writer = collect(agent.url, VISITOR)
        sent += 1
        seen, reader = views(agent.url, VISITOR)
        assert seen == sent, f"after event {sent} (worker {writer}) worker {reader} shows {seen}"
        if writer != reader:
            crossings.add((writer, reader))
        if len(crossings) == 2 and sent >= 20:
            break
    assert len(crossings) == 2, f"written on one worker and read on the other, both ways: {crossings}"

    # both workers change the session at once: no event is lost to the other's write
    def burst() -> None:
        for _ in range(10):
            collect(agent.url, VISITOR)

    threads = [threading.Thread(target=burst) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent += 60
    assert set(each_worker(agent.url, lambda: views(agent.url, VISITOR)).values()) == {sent}

    # the metrics, whichever worker is scraped, count every worker's events
    scraped = each_worker(
        agent.url,
        lambda: (
            (reply := fetch(agent.url + "/_p13n/metrics")).text,
            reply.headers["x-p13n-worker"],
        ),
    )
    for text in scraped.values():
        assert metric(text, "p13n_edge_events_total", outcome="accepted") == sent
        assert metric(text, "p13n_edge_decisions_total", slot="count", outcome="variant") >= sent - 60


def test_erasure_reaches_every_worker_before_it_is_acknowledged(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server, PSEUDONYM_KEY=KEY)
    agent = start_agent(
        origin.url, WORKERS="2", DEBUG="true", NATS_URL=nats_server, PSEUDONYM_KEY=KEY, STATUS_INTERVAL_S="0.5", ID="edge-w"
    )
    wait_for(
        lambda: "edge-w" in (json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body).get("erasure_registered") or [])
    )
    collect(agent.url, VISITOR, 3, "/p/dr01")  # three dresses: the hero turns to them
    wait_accepted(hub, 3)
    # both workers hold the subject's session in memory
    before = each_worker(agent.url, lambda: decide(agent.url, VISITOR, "hero"))
    assert all("More dresses" in html for html in before.values()), before

    reply = fetch(hub.url + f"/v1/subjects/{VISITOR}", hub.auth("privacy_officer"), method="DELETE")
    assert reply.status == 202, reply.text
    request_id = json.loads(reply.body)["request_id"]

    def acknowledged() -> dict[str, Any] | None:
        status = json.loads(fetch(hub.url + f"/v1/erasures/{request_id}", hub.auth("privacy_officer")).body)
        edge: dict[str, Any] = status["edges"]["edge-w"]
        return edge if edge["status"] == "acknowledged" else None

    wait_for(lambda: acknowledged() is not None)
    assert (acknowledged() or {})["deleted"]["sessions"] == 1
    # neither worker shows the erased session, and both refuse the subject's late events
    after = each_worker(agent.url, lambda: decide(agent.url, VISITOR, "hero"))
    assert not any("More dresses" in html for html in after.values()), after
    late = each_worker(agent.url, lambda: collect(agent.url, VISITOR))
    assert all(body["accepted"] == 0 and body["results"][0]["reason"] == "erased_subject" for body in late.values())
    assert files_containing([agent.data_dir], [VISITOR]) == []


def test_a_new_bundle_reaches_every_worker_and_they_are_forked_again_to_share_it(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    tmp_path: Path,
) -> None:
    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key)
    agent = start_agent(
        origin.url,
        WORKERS="2",
        DEBUG="true",
        NATS_URL=nats_server,
        BUNDLE_PUBLIC_KEY=key,
        TEMPLATES_DIR=str(templates_with_counter(tmp_path)),
    )
    old = each_worker(agent.url, lambda: ((h := health(agent.url))["model_version"], str(h["worker"]["pid"])))
    assert set(old.values()) == {None}
    collect(agent.url, VISITOR, 3)

    from tests.integration.test_bundle_sync import p13n

    pushed = p13n(hub, "push", str(trained_bundle.path), "--public-key", key)
    assert pushed.returncode == 0, pushed.stderr
    # the owner asked the server's parent to load the bundle and fork new workers from it
    wait_for(lambda: "workers restart on model bundle v1" in agent.child.log_path.read_text(), timeout_s=60)

    def replaced() -> bool:  # every worker answering was forked after the swap
        now = each_worker(agent.url, lambda: ((h := health(agent.url))["model_version"], str(h["worker"]["pid"])))
        return set(now.values()) == {1} and not set(now) & set(old)

    wait_for(replaced, timeout_s=60)
    # the session lived through the swap (it is in SQLite, not only in a worker's memory):
    # the bundle's content replaced the templates, and its hero turns to the three dresses
    heroes = each_worker(agent.url, lambda: decide(agent.url, VISITOR, "hero"))
    assert all("More dresses" in html for html in heroes.values()), heroes
    decided = json.loads(fetch(agent.url + "/_p13n/decide?slots=hero&page=/", headers(VISITOR)).body)
    assert decided["model_version"] == 1 and decided["segment"]


def test_the_owner_killed_another_worker_takes_over_and_no_event_is_lost(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, WORKERS="2", DEBUG="true", NATS_URL=nats_server, ID="edge-o")
    owners = each_worker(agent.url, lambda: ((h := health(agent.url))["worker"]["owner"], str(h["worker"]["pid"])))
    assert sorted(owners.values()) == [False, True]
    sent = sum(collect(agent.url, f"visitorOwner{i:012d}")[0]["accepted"] for i in range(20))
    wait_accepted(hub, sent)

    (owner,) = [pid for pid, is_owner in owners.items() if is_owner]
    os.kill(int(owner), signal.SIGKILL)
    # a batch on a connection the killed worker held gets no answer and is sent again
    sent += sum(collect(agent.url, f"visitorOwner{i:012d}", retry=True)[0]["accepted"] for i in range(20, 60))
    # the server replaces the killed worker; one of the two now publishes the outbox
    wait_accepted(hub, sent)
    wait_for(lambda: health(agent.url)["workers"] == 2)
    pids = each_worker(agent.url, lambda: ((h := health(agent.url))["worker"]["owner"], str(h["worker"]["pid"])))
    assert owner not in pids and sorted(pids.values()) == [False, True]


def test_a_first_time_visitors_page_names_one_visitor_whichever_workers_decide_its_slots(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    """nginx asks the agent once for the page (the visitor cookie) and once per slot; with
    two workers those requests land on either. Each must decide for the visitor the
    cookie names, or a first page's experiment arm would not be the visitor's next one."""
    agent = start_agent(ssi_origin.url, WORKERS="2")
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    for _ in range(40):
        first = fetch(nginx.url + "/", {"User-Agent": DESKTOP_UA})
        cookie = first.headers["Set-Cookie"]
        assert cookie and cookie.startswith("p13n_id="), first.headers
        again = fetch(nginx.url + "/", {"User-Agent": DESKTOP_UA, "Cookie": cookie.split(";")[0]})
        arms = [re.findall(r'class="banner[^"]*" data-variant="([^"]+)"', r.text) for r in (first, again)]
        assert len(arms[0]) == 1 and arms[0] == arms[1], (
            arms,
            re.findall(r".{0,300}class=.banner.{0,100}", first.text + "#####" + again.text, re.S),
        )
