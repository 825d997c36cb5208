"""The hub declares the JetStream layout on a real nats-server, idempotently."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
from nats.js.api import RetentionPolicy
from starlette.testclient import TestClient

from hub.app import create_app
from hub.settings import HubSettings
from models import nats_layout as L


def wait_ready(client: TestClient, timeout_s: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get("/v1/healthz")
        if r.status_code == 200:
            body: dict[str, str] = r.json()
            return body
        time.sleep(0.05)
    raise AssertionError(f"hub not ready: {r.json()}")


async def layout(url: str) -> dict[str, object]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        events = await js.stream_info(L.EVENTS_STREAM)
        erasure = await js.stream_info(L.ERASURE_STREAM)
        streams = [s.config.name async for s in _streams(js)]
        await js.key_value(L.PROFILES_BUCKET)
        await js.key_value(L.CONTROL_BUCKET)
        await js.object_store(L.MODELS_BUCKET)
        return {
            "events_retention": events.config.retention,
            "events_subjects": events.config.subjects,
            "erasure_retention": erasure.config.retention,
            "streams": sorted(streams),
        }
    finally:
        await nc.close()


async def _streams(js):  # type: ignore[no-untyped-def]
    for info in await js.streams_info():
        yield info


def test_hub_creates_streams_and_buckets_once(nats_server: str, tmp_path: Path) -> None:
    settings = HubSettings(nats_url=nats_server, data_dir=tmp_path / "hub")
    with TestClient(create_app(settings)) as client:
        assert wait_ready(client) == {"status": "ok", "nats": "connected"}
    first = asyncio.run(layout(nats_server))
    assert first["events_retention"] == RetentionPolicy.WORK_QUEUE
    assert first["events_subjects"] == ["p13n.events.>"]
    assert first["erasure_retention"] == RetentionPolicy.LIMITS
    with TestClient(create_app(settings)) as client:  # a restart converges, duplicates nothing
        wait_ready(client)
    second = asyncio.run(layout(nats_server))
    assert second == first
    assert second["streams"] == sorted(
        [
            L.EVENTS_STREAM,
            L.ERASURE_STREAM,
            L.DEAD_LETTER_STREAM,
            "KV_" + L.PROFILES_BUCKET,
            "KV_" + L.CONTROL_BUCKET,
            "OBJ_" + L.MODELS_BUCKET,
        ]
    )


def test_hub_waits_for_nats_and_becomes_ready_when_it_appears(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub.auth import create_token
    from p13n.procs import free_port, start_nats

    port = free_port()
    token = create_token(tmp_path / "tokens.json", "ops", "viewer")
    settings = HubSettings(
        nats_url=f"nats://127.0.0.1:{port}",
        nats_retry_s=0.1,
        data_dir=tmp_path / "hub",
        tokens_file=str(tmp_path / "tokens.json"),
    )
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/healthz")
        assert r.status_code == 503 and r.json()["nats"] == "unavailable"
        child, _ = start_nats(tmp_path, port=port)
        try:
            assert wait_ready(client)["status"] == "ok"
            assert client.get("/metrics").status_code == 401  # metrics need a token
            metrics = client.get("/metrics", headers={"authorization": f"Bearer {token}"})
            assert "p13n_hub_nats_connected 1.0" in metrics.text
        finally:
            child.stop()
