"""A hostile edge: with edge A's NATS credentials, every attack of the audit is refused,
while A's real agent keeps doing its own work (events with acks, profiles, bundles,
erasure acknowledgements) against a nats-server running the generated configuration.

Each attack is checked twice: the server reports a permissions violation for it, and
its effect is absent when looked at with the hub's credentials.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig

from hub.nats_auth import render
from models import nats_layout as L
from p13n.procs import free_port, nats_server_binary, spawn, wait_port
from tests.conftest import AgentFactory, Hub, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted

HUB_PW, A_PW, B_PW = "hub-secret-1", "edge-a-secret", "edge-b-secret"


def health(url: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(url + "/_p13n/healthz").body)
    return data


def erasure(hub: Hub, request_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(hub.url + f"/v1/erasures/{request_id}", hub.auth("privacy_officer")).body)
    return data


def registered(hub: Hub) -> list[str]:
    return list(json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body).get("erasure_registered") or [])


#: (name, subject, payload): what a hostile edge A publishes; every one must be refused.
def publish_attacks() -> list[tuple[str, str, bytes]]:
    ev, er = L.EVENTS_STREAM, L.ERASURE_STREAM
    kv_p, kv_c, obj = f"KV_{L.PROFILES_BUCKET}", f"KV_{L.CONTROL_BUCKET}", f"OBJ_{L.MODELS_BUCKET}"
    pull = json.dumps({"stream_name": ev, "config": {"ack_policy": "explicit"}}).encode()
    push = json.dumps({"stream_name": kv_p, "config": {"deliver_subject": L.ERASURE_ORDERS_SUBJECT}}).encode()
    return [
        ("ephemeral consumer on the events stream", f"$JS.API.CONSUMER.CREATE.{ev}", pull),
        ("named consumer on the events stream", f"$JS.API.CONSUMER.CREATE.{ev}.spy.p13n.events.edge-b", pull),
        ("durable consumer on the events stream", f"$JS.API.CONSUMER.DURABLE.CREATE.{ev}.spy", pull),
        ("push consumer republishing profiles as erasure orders", f"$JS.API.CONSUMER.CREATE.{kv_p}", push),
        (
            "consumer on own erasure name with another filter",
            f"$JS.API.CONSUMER.CREATE.{er}.erasure-edge-a.p13n.erasure.acks.>",
            pull,
        ),
        ("fetch the hub's events", f"$JS.API.CONSUMER.MSG.NEXT.{ev}.hub-ingest", b'{"batch": 10}'),
        ("fetch edge B's erasure orders", f"$JS.API.CONSUMER.MSG.NEXT.{er}.erasure-edge-b", b'{"batch": 1}'),
        ("ack the hub's events unprocessed", f"$JS.ACK.{ev}.hub-ingest.1.1.1.0.0", b""),
        ("purge the events stream", f"$JS.API.STREAM.PURGE.{ev}", b""),
        ("delete the events stream", f"$JS.API.STREAM.DELETE.{ev}", b""),
        ("reroute the events stream", f"$JS.API.STREAM.UPDATE.{ev}", json.dumps({"name": ev, "subjects": ["x.>"]}).encode()),
        ("delete the hub's consumer", f"$JS.API.CONSUMER.DELETE.{ev}.hub-ingest", b""),
        ("delete edge B's erasure consumer", f"$JS.API.CONSUMER.DELETE.{er}.erasure-edge-b", b""),
        ("read the events stream", f"$JS.API.STREAM.MSG.GET.{ev}", b'{"seq": 1}'),
        ("forge edge B's erasure ack", L.erasure_ack_subject("edge-b"), b"{}"),
        ("publish as edge B", L.events_subject("edge-b"), b"[]"),
        ("publish edge B's status", L.status_subject("edge-b"), b"{}"),
        ("publish an erasure order", L.ERASURE_ORDERS_SUBJECT, b"{}"),
        ("write a profile", f"$KV.{L.PROFILES_BUCKET}.visitorForged000000001", b'{"attributes": {"tier": "gold"}}'),
        ("repoint bundle.current", f"$KV.{L.CONTROL_BUCKET}.{L.CURRENT_BUNDLE_KEY}", b'{"name": "evil.tar", "version": 99}'),
        ("delete a profile message", f"$JS.API.STREAM.MSG.DELETE.{kv_p}", b'{"seq": 1}'),
        ("purge the control bucket", f"$JS.API.STREAM.PURGE.{kv_c}", b""),
        ("write a model chunk", f"$O.{L.MODELS_BUCKET}.C.forged", b"evil"),
        ("write model metadata", f"$O.{L.MODELS_BUCKET}.M.Zm9yZ2Vk", b"{}"),
        ("delete the model store", f"$JS.API.STREAM.DELETE.{obj}", b""),
    ]


#: Subscriptions a hostile edge A tries: reading other edges' events or others' replies.
SUBSCRIBE_ATTACKS = [
    ("every reply on the server (the hub's fetched events)", "_INBOX.>"),
    ("edge B's replies", f"{L.edge_inbox_prefix('edge-b')}.>"),
    ("every edge's events", f"{L.EVENTS_SUBJECT_PREFIX}.>"),
    ("erasure acknowledgements", f"{L.ERASURE_ACKS_PREFIX}.>"),
    ("JetStream advisories", "$JS.EVENT.>"),
]


async def attack(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Run every attack as edge A; (attack → server's refusal) for publishes and
    subscriptions ('' when the server did not refuse)."""
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e).lower())

    nc = await nats.connect(url, inbox_prefix=L.edge_inbox_prefix("edge-a"), error_cb=on_error, allow_reconnect=False)
    refused_pub: dict[str, str] = {}
    for name, subject, payload in publish_attacks():
        await nc.publish(subject, payload, reply=nc.new_inbox())
        await nc.flush()
        await asyncio.sleep(0.05)
        refused_pub[name] = next((e for e in errors if f'publish to "{subject.lower()}"' in e), "")
    refused_sub: dict[str, str] = {}
    for name, subject in SUBSCRIBE_ATTACKS:
        await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.05)
        refused_sub[name] = next((e for e in errors if f'subscription to "{subject.lower()}"' in e), "")
    await nc.close()
    return refused_pub, refused_sub


async def layout_seen_by_hub(url: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    out: dict[str, Any] = {}
    for stream in (
        L.EVENTS_STREAM,
        L.ERASURE_STREAM,
        f"KV_{L.PROFILES_BUCKET}",
        f"KV_{L.CONTROL_BUCKET}",
        f"OBJ_{L.MODELS_BUCKET}",
    ):
        info = await js.stream_info(stream)
        out[stream] = {"subjects": info.config.subjects, "messages": info.state.messages}
        out[stream]["consumers"] = sorted(c.name or "" for c in await js.consumers_info(stream))
    kv = await js.key_value(L.CONTROL_BUCKET)
    out["pointer"] = json.loads((await kv.get(L.CURRENT_BUNDLE_KEY)).value or b"{}")
    # (kv.keys() would leave a consumer of its own behind)
    profiles = await js.stream_info(f"KV_{L.PROFILES_BUCKET}", subjects_filter=">")
    out["profile_keys"] = sorted(s.removeprefix(f"$KV.{L.PROFILES_BUCKET}.") for s in profiles.state.subjects or {})
    b_info = await js.consumer_info(L.ERASURE_STREAM, L.erasure_consumer("edge-b"))
    out["edge_b_pending"] = int(b_info.num_pending or 0) + int(b_info.num_ack_pending or 0)
    await nc.close()
    return out


async def put_profile(url: str, subject: str) -> None:
    nc = await nats.connect(url)
    kv = await nc.jetstream().key_value(L.PROFILES_BUCKET)
    await kv.put(subject, json.dumps({"attributes": {"tier": "gold"}}).encode())
    await nc.close()


async def hub_can_still_administer(url: str) -> str:
    """The hub's own credentials keep every right (a consumer is created and removed)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.add_consumer(L.ERASURE_STREAM, ConsumerConfig(name="probe", durable_name="probe"))
    await js.delete_consumer(L.ERASURE_STREAM, "probe")
    await nc.close()
    return str(info.name)


def test_edge_credentials_do_their_own_work_and_nothing_else(
    tmp_path: Path, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory, trained_bundle: TrainedBundle
) -> None:
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(render(f"127.0.0.1:{port}", str(tmp_path / "js"), HUB_PW, {"edge-a": A_PW, "edge-b": B_PW}))
    server = spawn("nats-auth", [str(nats_server_binary()), "-c", str(conf)], tmp_path)
    hub_url, a_url = f"nats://hub:{HUB_PW}@127.0.0.1:{port}", f"nats://edge-a:{A_PW}@127.0.0.1:{port}"
    try:
        wait_port(server, port)
        key = str(trained_bundle.public_key)
        hub = start_hub(hub_url, PSEUDONYM_KEY="lp-key", BUNDLE_PUBLIC_KEY=key)
        edge = {"PSEUDONYM_KEY": "lp-key", "STATUS_INTERVAL_S": "0.5", "BUNDLE_PUBLIC_KEY": key}
        a = start_agent(origin.url, ID="edge-a", NATS_URL=a_url, **edge)
        b = start_agent(origin.url, ID="edge-b", NATS_URL=f"nats://edge-b:{B_PW}@127.0.0.1:{port}", **edge)
        # the hub registers both for erasures from their first heartbeats
        wait_for(lambda: registered(hub) == ["edge-a", "edge-b"])

        # A's own work: events with acks …
        assert post_events(a.url, [page_view() for _ in range(4)]).status == 202
        wait_accepted(hub, 4)
        # … a bundle pushed by the hub's credentials, read through direct gets …
        pushed = subprocess.run(
            [sys.executable, "-m", "p13n", "push", str(trained_bundle.path), "--hub", hub.url, "--token", hub.tokens["operator"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pushed.returncode == 0, pushed.stderr
        wait_for(lambda: health(a.url)["model_version"] == 1 and health(b.url)["model_version"] == 1)
        # … profiles followed …
        asyncio.run(put_profile(hub_url, "visitorLeastPriv00000001"))
        wait_for(lambda: health(a.url)["profiles"] == 1)
        # … and erasures acknowledged as A, while B is offline with the order waiting
        b.stop()
        reply = fetch(hub.url + "/v1/subjects/someone-42", hub.auth("privacy_officer"), method="DELETE")
        assert reply.status == 202, reply.text
        request_id = json.loads(reply.body)["request_id"]
        wait_for(lambda: erasure(hub, request_id)["edges"]["edge-a"]["status"] == "acknowledged")
        before = asyncio.run(layout_seen_by_hub(hub_url))
        assert before["edge_b_pending"] == 1

        refused_pub, refused_sub = asyncio.run(attack(a_url))
        assert [name for name, why in refused_pub.items() if "permissions violation" not in why] == []
        assert [name for name, why in refused_sub.items() if "permissions violation" not in why] == []

        # nothing changed: streams, subjects, consumers, keys, the live pointer, B's order
        after = asyncio.run(layout_seen_by_hub(hub_url))
        assert after == before
        assert after[L.EVENTS_STREAM]["consumers"] == ["hub-ingest"]
        assert after[f"KV_{L.PROFILES_BUCKET}"]["consumers"] == []  # edges read without consumers
        assert after["pointer"]["version"] == 1
        assert after["profile_keys"] == ["visitorLeastPriv00000001"]
        status = erasure(hub, request_id)
        assert status["status"] == "pending" and status["edges"]["edge-b"]["status"] == "pending"

        # A still works after the attempts; the hub keeps full rights
        assert post_events(a.url, [page_view()]).status == 202
        wait_accepted(hub, 5)
        assert asyncio.run(hub_can_still_administer(hub_url)) == "probe"
        # B comes back, applies the order it missed and the request completes
        start_agent(
            origin.url,
            port=b.port,
            DATA_DIR=str(b.data_dir),
            ID="edge-b",
            NATS_URL=f"nats://edge-b:{B_PW}@127.0.0.1:{port}",
            **edge,
        )
        wait_for(lambda: erasure(hub, request_id)["status"] == "completed")
    finally:
        server.stop()
