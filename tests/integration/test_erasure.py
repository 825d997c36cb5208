"""Erasure end to end: real nats-server, the hub, two edge agents, one of them offline.

After the request completes, neither the raw id, nor the pseudonym, nor the linked
visitor id is anywhere: not in any file of the hub's or the edges' data directories
(SQLite databases with their WAL, user factors), not in any message of any NATS stream
or bucket. Late events of the erased subject are dropped at the edge and at the hub.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from models.pseudonym import pseudonym
from p13n.procs import start_nats
from tests.conftest import API_KEY, AgentFactory, Hub, HubFactory, Origin
from tests.integration.helpers import fetch, metric, wait_for
from tests.integration.ingest_helpers import hub_rows, stats, wait_accepted, warehouse_rows
from tests.integration.privacy_helpers import files_containing, nats_messages_containing, rows_containing

RAW_ID = "alice-raw-id-42"
KEY = "erasure-test-key"
VISITOR = "visitorErasure0000000001"
OTHER = "visitorBystander00000001"
CONSENT = "analytics.personalization"


def collect(agent_url: str, visitor: str, events: list[dict[str, Any]], user: str | None = None) -> dict[str, Any]:
    # a logged-in user is named by the site's auth layer (the trusted user header), not by the visitor
    headers = {"Content-Type": "application/json", "Cookie": f"p13n_id={visitor}; p13n_consent={CONSENT}"}
    reply = fetch(
        agent_url + "/_p13n/collect",
        {**headers, **({"X-User-Id": user} if user else {})},
        method="POST",
        data=json.dumps({"events": events}).encode(),
    )
    assert reply.status == 202, reply.text
    body: dict[str, Any] = json.loads(reply.body)
    return body


def browse(agent_url: str, visitor: str, user: str | None) -> int:
    events: list[dict[str, Any]] = [
        {"type": "consent", "categories": ["necessary", "analytics", "personalization"], "source": "banner"},
        {"type": "page_view", "url": "https://shop.example/p/dr01"},
        {"type": "click", "item_id": "dr01", "url": "https://shop.example/p/dr01"},
    ]
    if user:
        events.append({"type": "identify"})
    body = collect(agent_url, visitor, [{**e, "event_id": uuid.uuid4().hex} for e in events], user)
    assert body["accepted"] == len(events), body
    return len(events)


def health(agent_url: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(agent_url + "/_p13n/healthz").body)
    return data


def erasure_status(hub: Hub, request_id: str) -> dict[str, Any]:
    reply = fetch(hub.url + f"/v1/erasures/{request_id}", hub.auth("privacy_officer"))
    assert reply.status == 200, reply.text
    data: dict[str, Any] = json.loads(reply.body)
    return data


def started_tokens(hub: Hub, request_id: str) -> list[str]:
    audit = json.loads(fetch(hub.url + "/v1/audit?limit=1000", hub.auth("admin")).body)["entries"]
    return next(list(e["detail"]["tokens"]) for e in audit if e["detail"].get("request_id") == request_id)


def registered(hub: Hub) -> list[str]:
    data = json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)
    return list(data.get("erasure_registered") or [])


def test_erasure_reaches_every_edge_including_an_offline_one_and_leaves_nothing(
    nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory, tmp_path: Path
) -> None:
    pseud = pseudonym(RAW_ID, KEY.encode())
    factors = tmp_path / "factors" / "user-factors-v1.npz"
    factors.parent.mkdir()
    np.savez(factors, ids=np.array([pseud, "p1_" + "0" * 40]), factors=np.ones((2, 4), dtype=np.float32))
    parquet = tmp_path / "lake-parquet"
    hub = start_hub(nats_server, PSEUDONYM_KEY=KEY, PROFILE_SYNC_S="0.3", USER_FACTORS=str(factors), LAKE_EXPORT=str(parquet))
    edge = {"NATS_URL": nats_server, "PSEUDONYM_KEY": KEY, "STATUS_INTERVAL_S": "0.5"}
    a = start_agent(origin.url, ID="edge-a", **edge)
    b = start_agent(origin.url, ID="edge-b", **edge)
    wait_for(lambda: registered(hub) == ["edge-a", "edge-b"])

    # the subject browses on both edges and logs in on edge-a; a bystander browses too
    sent = browse(a.url, VISITOR, RAW_ID) + browse(b.url, VISITOR, None) + browse(a.url, OTHER, None)
    wait_accepted(hub, sent)
    # consented profiles reach both edges: the subject's twice (as the logged-in user on
    # edge-a, as the anonymous visitor on edge-b) and the bystander's
    wait_for(lambda: health(a.url)["profiles"] == 3 and health(b.url)["profiles"] == 3)
    # raw ids never reach storage anywhere: edges pseudonymize before writing
    assert files_containing([a.data_dir, b.data_dir, hub.data_dir], [RAW_ID]) == []
    b.stop()  # edge-b goes offline holding the subject's session and profile
    assert files_containing([b.data_dir], [VISITOR]), "edge-b must hold the subject before the erasure"
    assert files_containing([hub.data_dir], [pseud, VISITOR])

    reply = fetch(hub.url + f"/v1/subjects/{RAW_ID}", hub.auth("privacy_officer"), method="DELETE")
    assert reply.status == 202, reply.text
    started = json.loads(reply.body)
    request_id = started["request_id"]
    assert started["hub"]["warehouse.events"] == 7 and started["hub"]["lake.raw_events"] == 7
    assert started["hub"]["profiles_kv"] >= 1 and started["hub"]["user_factors"] == 1
    # the lake's Parquet mirror is rewritten at once: the subject's day holds only the bystander's events now
    assert started["hub"]["lake_parquet.partitions_rewritten"] == 1
    mirror = duckdb.sql(f"SELECT body FROM read_parquet('{parquet}/*/*.parquet', hive_partitioning = true)").fetchall()
    assert len(mirror) == 3 and not any(VISITOR in body or pseud in body for (body,) in mirror)
    assert set(started["edges"]) == {"edge-a", "edge-b"}

    wait_for(lambda: erasure_status(hub, request_id)["edges"]["edge-a"]["status"] == "acknowledged")
    status = erasure_status(hub, request_id)
    assert status["status"] == "pending" and status["edges"]["edge-b"]["status"] == "pending"
    metrics = fetch(hub.url + "/metrics", hub.auth("viewer")).text
    assert metric(metrics, "p13n_hub_erasures_pending") == 1 and metric(metrics, "p13n_hub_erasure_requests_total") == 1
    assert status["edges"]["edge-a"]["deleted"]["sessions_in_memory"] == 1  # and in SQLite once flushed

    # late events of the erased subject: dropped at the edge and at the hub
    late = collect(a.url, VISITOR, [{"event_id": uuid.uuid4().hex, "type": "page_view", "url": "https://shop.example/"}])
    assert late["accepted"] == 0 and late["results"][0]["reason"] == "erased_subject"
    api = fetch(
        hub.url + "/v1/events",
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
        data=json.dumps(
            [{"event_id": uuid.uuid4().hex, "type": "page_view", "user_id": RAW_ID, "url": "https://x.example/"}]
        ).encode(),
    )
    assert api.status == 202 and json.loads(api.body)["results"][0]["reason"] == "erased_subject"
    assert stats(hub)["suppressed"] == 1 and health(a.url)["suppressed_subjects"] == len(started_tokens(hub, request_id))

    # edge-b comes back: it applies the order it missed, and the request completes
    b2 = start_agent(origin.url, port=b.port, DATA_DIR=str(b.data_dir), ID="edge-b", **edge)
    wait_for(lambda: erasure_status(hub, request_id)["status"] == "completed")
    done = erasure_status(hub, request_id)
    assert metric(fetch(hub.url + "/metrics", hub.auth("viewer")).text, "p13n_hub_erasures_pending") == 0
    assert done["edges"]["edge-b"]["deleted"]["sessions"] == 1 and done["edges"]["edge-b"]["deleted"]["profiles"] == 2
    assert done["completion_s"] is not None

    needles = [RAW_ID, pseud, VISITOR]
    assert files_containing([hub.data_dir, a.data_dir, b2.data_dir, factors.parent], needles) == []
    assert nats_messages_containing(nats_server, needles) == []
    # the bystander is untouched
    assert files_containing([hub.data_dir], [OTHER]) and health(b2.url)["profiles"] >= 1
    with np.load(factors) as data:
        assert list(data["ids"]) == ["p1_" + "0" * 40]

    # the access request now finds nothing; the erasure itself is in the audit log, by token only
    export = json.loads(fetch(hub.url + f"/v1/subjects/{RAW_ID}", hub.auth("privacy_officer")).body)
    assert export["events"] == [] and export["lake"] == [] and export["profiles"] == {}
    audit = json.loads(fetch(hub.url + "/v1/audit?limit=1000", hub.auth("admin")).body)["entries"]
    erasures = [e for e in audit if e["action"] == "subjects.erase"]
    assert len(erasures) == 1 and erasures[0]["detail"]["request_id"] == request_id
    assert RAW_ID not in json.dumps(audit) and pseud not in json.dumps(audit)


def test_erasure_without_registered_edges_completes_at_once_and_export_lists_the_data(
    nats_server: str, start_hub: HubFactory, hub_backend: dict[str, str]
) -> None:
    """On each storage backend (SQLite files, PostgreSQL)."""
    hub = start_hub(nats_server, PSEUDONYM_KEY=KEY, **hub_backend)
    events = [
        {"event_id": uuid.uuid4().hex, "type": "identify", "user_id": "bob-7", "anonymous_id": "visitorBob0000000000001"},
        {
            "event_id": uuid.uuid4().hex,
            "type": "page_view",
            "anonymous_id": "visitorBob0000000000001",
            "url": "https://s.example/p/1",
        },
        {
            "event_id": uuid.uuid4().hex,
            "type": "consent",
            "anonymous_id": "visitorBob0000000000001",
            "categories": ["necessary", "analytics"],
            "source": "crm-import",
        },
    ]
    reply = fetch(hub.url + "/v1/events", {"Authorization": f"Bearer {API_KEY}"}, method="POST", data=json.dumps(events).encode())
    assert reply.status == 202 and json.loads(reply.body)["accepted"] == 3
    # the commands are clients of the admin API (authorised and audited like any call)
    token = ["--hub", hub.url, "--token", hub.tokens["privacy_officer"]]
    exported = subprocess.run(
        [sys.executable, "-m", "p13n", "subject", "export", "bob-7", *token], capture_output=True, text=True
    )
    assert exported.returncode == 0, exported.stderr
    export = json.loads(exported.stdout)
    assert export["identifiers"]["anonymous_ids"] == ["visitorBob0000000000001"]
    assert len(export["events"]) == 3 and len(export["lake"]) == 3
    assert [c["categories"] for c in export["consents"]] == [["analytics", "necessary"]]
    assert export["consents"][0]["source"] == "crm-import"
    viewer = ["--hub", hub.url, "--token", hub.tokens["viewer"]]
    denied = subprocess.run([sys.executable, "-m", "p13n", "erase", "bob-7", *viewer], capture_output=True, text=True)
    assert denied.returncode == 1 and "403 forbidden" in denied.stderr
    erased = subprocess.run(
        [sys.executable, "-m", "p13n", "erase", "bob-7", "--wait", "5", *token], capture_output=True, text=True
    )
    assert erased.returncode == 0, erased.stderr
    body = json.loads(erased.stdout)
    assert body["status"] == "completed" and body["edges"] == {}
    assert body["hub"]["warehouse.events"] == 3 and body["hub"]["warehouse.consent_log"] == 1
    assert fetch(hub.url + "/v1/erasures/er_unknown", hub.auth("privacy_officer")).status == 404
    too_long = fetch(hub.url + "/v1/subjects/" + "x" * 300, hub.auth("privacy_officer"), method="DELETE")
    assert too_long.status == 400 and json.loads(too_long.body)["error"]["reason"] == "bad_subject"
    time.sleep(0.1)
    needles = ["visitorBob0000000000001", pseudonym("bob-7", KEY.encode())]
    assert files_containing([hub.data_dir], needles) == []
    if hub.database_url:  # no row of any table names the subject (the tuples' bytes: docs/PRIVACY.md)
        assert rows_containing(hub.database_url, needles) == []
        assert hub_rows(hub, "SELECT count(*) FROM events") == [(0,)]


def test_an_erasure_interrupted_by_a_crash_is_finished_after_the_restart(nats_server: str, start_hub: HubFactory) -> None:
    """The hub died after recording the request and before deleting or publishing: the
    restarted hub finishes both from the record (identifiers kept encrypted until then)."""
    import asyncio

    import nats as nats_client

    from hub.pii import PiiCipher, parse_keyring
    from hub.storage.sqlite import SqliteStore
    from models import nats_layout as L
    from models.erasure import ErasureOrder, erasure_token

    ring = "k1:" + base64.b64encode(b"k" * 32).decode()
    hub = start_hub(nats_server, PSEUDONYM_KEY=KEY, PII_KEYS=ring)
    events = [
        {"event_id": uuid.uuid4().hex, "type": "identify", "user_id": "frank-9", "anonymous_id": "visitorFrank00000000001"},
        {
            "event_id": uuid.uuid4().hex,
            "type": "page_view",
            "anonymous_id": "visitorFrank00000000001",
            "url": "https://s.example/",
        },
    ]
    reply = fetch(hub.url + "/v1/events", {"Authorization": f"Bearer {API_KEY}"}, method="POST", data=json.dumps(events).encode())
    assert json.loads(reply.body)["accepted"] == 2
    hub.stop()
    # what the request had made durable when the hub died: suppression and the record
    storage = SqliteStore(hub.data_dir)
    subject = storage.resolve_subject("frank-9", KEY.encode())
    tokens = sorted(erasure_token(i, KEY.encode()) for i in subject.all)
    order = ErasureOrder("er_crashtest", tuple(tokens), time.time())
    storage.suppress(tokens, "now")
    sealed = PiiCipher(parse_keyring(ring)).encrypt(
        json.dumps(
            {"given": subject.given, "pseudonym": subject.pseudonym, "anonymous_ids": sorted(subject.anonymous_ids)}
        ).encode(),
        aad=order.request_id,
    )
    storage.erasures.create(order, "test", [], sealed)
    storage.close()

    hub = start_hub(nats_server, port=hub.port, data_dir=hub.data_dir, PSEUDONYM_KEY=KEY, PII_KEYS=ring)

    def finished() -> bool:
        status = json.loads(fetch(hub.url + "/v1/erasures/er_crashtest", hub.auth("privacy_officer")).body)
        return bool(status["hub"]) and status["hub"]["warehouse.events"] == 2

    wait_for(finished)

    async def published_order() -> dict[str, Any]:
        nc = await nats_client.connect(nats_server)
        try:
            msg = await nc.jetstream().get_last_msg(L.ERASURE_STREAM, L.ERASURE_ORDERS_SUBJECT)
            doc: dict[str, Any] = json.loads(msg.data or b"{}")
            return doc
        finally:
            await nc.close()

    wait_for(lambda: asyncio.run(published_order()).get("request_id") == "er_crashtest")
    assert files_containing([hub.data_dir], ["visitorFrank00000000001", subject.pseudonym]) == []
    wait_for(lambda: warehouse_rows(hub.data_dir, "SELECT work, published FROM erasures") == [(None, 1)])


def test_while_nats_does_not_answer_calls_get_503_and_an_erasure_records_nothing(tmp_path: Path, start_hub: HubFactory) -> None:
    """A connected nats-server that stops answering (frozen here; a cluster electing a
    leader looks the same) makes NATS-backed calls answer 503 ``nats_unavailable`` with
    retry-after, audited, instead of a 500; a refused erasure leaves no record behind,
    and the same request succeeds once NATS answers again."""
    child, port = start_nats(tmp_path / "nats")
    try:
        hub = start_hub(f"nats://127.0.0.1:{port}", PSEUDONYM_KEY=KEY)
        events = [
            {"event_id": uuid.uuid4().hex, "type": "identify", "user_id": "gina-3", "anonymous_id": "visitorGina00000000001"},
        ]
        reply = fetch(
            hub.url + "/v1/events", {"Authorization": f"Bearer {API_KEY}"}, method="POST", data=json.dumps(events).encode()
        )
        assert json.loads(reply.body)["accepted"] == 1
        wait_for(lambda: warehouse_rows(hub.data_dir, "SELECT count(*) FROM events") == [(1,)])
        os.kill(child.proc.pid, signal.SIGSTOP)
        try:
            erased = fetch(hub.url + "/v1/subjects/gina-3", hub.auth("privacy_officer"), method="DELETE")
            listed = fetch(hub.url + "/v1/bundles", hub.auth("viewer"))  # any NATS-backed call
        finally:
            os.kill(child.proc.pid, signal.SIGCONT)
        for reply in (erased, listed):
            assert reply.status == 503, reply.text
            assert json.loads(reply.body)["error"]["reason"] == "nats_unavailable"
            assert reply.headers.get("retry-after") == "5"
        assert warehouse_rows(hub.data_dir, "SELECT count(*) FROM erasures") == [(0,)]
        assert warehouse_rows(hub.data_dir, "SELECT count(*) FROM events") == [(1,)]
        audit = json.loads(fetch(hub.url + "/v1/audit", hub.auth("admin")).body)["entries"]
        assert {(e["action"], e["status"]) for e in audit} >= {("subjects.erase", 503), ("bundles.read", 503)}

        erased = fetch(hub.url + "/v1/subjects/gina-3", hub.auth("privacy_officer"), method="DELETE")
        assert erased.status == 202, erased.text
        assert warehouse_rows(hub.data_dir, "SELECT count(*) FROM events") == [(0,)]
    finally:
        child.stop()
