"""Bundles through the hub and NATS: push → every edge swaps; a tampered bundle is
refused everywhere and reported; a version is never reused for other bytes; an edge
restarted without NATS serves the bundle it last accepted."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import nats

from models import nats_layout as L
from tests.conftest import AgentFactory, Hub, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch, metric, wait_for


def health(url: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(fetch(url + "/_p13n/healthz").body)
    return data


def p13n(hub: Hub, *args: str, role: str = "operator") -> subprocess.CompletedProcess[str]:
    """A ``p13n`` admin command against ``hub`` with the token of ``role``."""
    return subprocess.run(
        [sys.executable, "-m", "p13n", *args, "--hub", hub.url, "--token", hub.tokens[role]],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def publish_raw(nats_url: str, name: str, data: bytes, version: int) -> None:
    from hub.nats_setup import ensure_layout

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_layout(js)
    await (await js.object_store(L.MODELS_BUCKET)).put(name, data)
    pointer = {"name": name, "version": version, "sha256": hashlib.sha256(data).hexdigest()}
    await (await js.key_value(L.CONTROL_BUCKET)).put(L.CURRENT_BUNDLE_KEY, json.dumps(pointer).encode())
    await nc.close()


def test_push_swaps_every_edge_and_tampering_is_refused(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key)
    edges = [start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID=f"edge-{i}") for i in range(2)]
    assert all(health(e.url)["model_version"] is None for e in edges)
    assert all(health(e.url)["status"] == "degraded" and health(e.url)["problems"] == ["no_model"] for e in edges)
    assert p13n(hub, "push", str(trained_bundle.path), role="viewer").returncode == 1  # a viewer may not
    pushed = p13n(hub, "push", str(trained_bundle.path), "--public-key", key)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"] == 1
    wait_for(lambda: all(health(e.url)["model_version"] == 1 for e in edges))
    assert all(health(e.url)["status"] == "ok" for e in edges)
    decided = json.loads(fetch(edges[0].url + "/_p13n/decide?slots=hero&page=/").body)
    assert decided["model_version"] == 1 and decided["segment"]
    # the push is in the audit chain, with who did it and what
    audit = json.loads(fetch(hub.url + "/v1/audit?limit=100", hub.auth("admin")).body)["entries"]
    (upload,) = [e for e in audit if e["action"] == "bundles.upload" and e["status"] == 201]
    assert upload["actor"] == "test-operator" and upload["detail"]["version"] == 1

    data = bytearray(trained_bundle.path.read_bytes())
    # a byte inside a model file (not in the tar's block padding, which no hash covers)
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        member = tar.getmember("als_topk.onnx")
    data[member.offset_data + member.size // 2] ^= 0xFF
    asyncio.run(publish_raw(nats_server, "bundle-v2.tar", bytes(data), 2))
    wait_for(lambda: all("refused" in str(health(e.url)["bundle_error"]) for e in edges))
    assert all(health(e.url)["model_version"] == 1 for e in edges)  # still serving the old one
    assert metric(fetch(edges[1].url + "/_p13n/metrics").text, "p13n_edge_bundles_refused_total") == 1

    # an unsigned tar is refused the same way
    asyncio.run(publish_raw(nats_server, "bundle-v3.tar", b"not a bundle", 3))
    wait_for(lambda: "bundle-v3.tar" in str(health(edges[0].url)["bundle_error"]))

    # neither the CLI nor the hub accepts what does not verify
    assert p13n(hub, "push", "/dev/null", "--public-key", key).returncode == 1
    refused = p13n(hub, "push", "/dev/null")
    assert refused.returncode == 1 and "bundle_" in refused.stderr and refused.stderr.count("\n") == 1
    # the edges recover: the hub points at v1 again, and the stale errors clear
    assert p13n(hub, "bundle", "activate", "1").returncode == 0
    wait_for(lambda: all(health(e.url)["bundle_error"] == "" and health(e.url)["status"] == "ok" for e in edges))


def test_edge_restarted_without_nats_serves_the_last_accepted_bundle(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key)
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key)
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == 1)
    edge.stop()
    offline = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", BUNDLE_PUBLIC_KEY=key, DATA_DIR=str(edge.data_dir))
    h = health(offline.url)
    assert h["model_version"] == 1 and h["nats"] == "disconnected"
    page = fetch(offline.url + "/p/dr01")
    assert page.status == 200 and "<p13n-slot" not in page.text


def _train(trained_bundle: TrainedBundle, out_dir: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "p13n",
            "train",
            "--generate",
            "--no-tune",
            "--key",
            str(trained_bundle.public_key.parent / "bundle-signing.key"),
            "--out",
            str(out_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_fleet_view_activate_rollback_and_unique_versions(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    tmp_path: Path,
) -> None:
    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, EDGE_STALE_S="1.5", BUNDLE_PUBLIC_KEY=key)
    edges = [
        start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID=f"shop-{i}", STATUS_INTERVAL_S="0.3")
        for i in range(2)
    ]
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    # a second training into a fresh directory is "v1" again, with other bytes: refused
    clash = _train(trained_bundle, tmp_path / "fresh")
    assert clash["version"] == 1
    refused = p13n(hub, "push", str(clash["bundle"]))
    assert refused.returncode == 1 and "409 version_taken" in refused.stderr and "--version 2" in refused.stderr
    listing = json.loads(p13n(hub, "bundle", "list", role="viewer").stdout)
    assert [b["version"] for b in listing["bundles"]] == [1] and listing["next_version"] == 2
    assert listing["bundles"][0]["sha256"] == hashlib.sha256(trained_bundle.path.read_bytes()).hexdigest()
    assert listing["current"]["version"] == 1
    # the same bytes again: accepted, nothing stored twice
    again = p13n(hub, "push", str(trained_bundle.path))
    assert again.returncode == 0 and json.loads(again.stdout)["stored"] is False
    # the version the hub names is free
    v2 = _train(trained_bundle, tmp_path / "fresh", "--version", str(listing["next_version"]))
    assert p13n(hub, "push", str(v2["bundle"])).returncode == 0
    wait_for(lambda: all(health(e.url)["model_version"] == v2["version"] for e in edges))

    def fleet() -> dict[str, dict[str, object]]:
        return {e["edge_id"]: e for e in json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)["edges"]}

    wait_for(lambda: set(fleet()) == {"shop-0", "shop-1"} and all(e["model_version"] == v2["version"] for e in fleet().values()))
    assert not any(e["stale"] for e in fleet().values())
    # the fleet view and each edge's health say the same thing under the same names
    view, own = fleet()["shop-0"], health(edges[0].url)
    for name in ("status", "problems", "model_version", "model_sha256", "bundle_version", "content_source", "bundle_error"):
        assert view[name] == own[name], name
    assert own["model_sha256"] == hashlib.sha256(Path(str(v2["bundle"])).read_bytes()).hexdigest()

    rolled = p13n(hub, "bundle", "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["version"] == 1
    wait_for(lambda: all(health(e.url)["model_version"] == 1 for e in edges))

    activated = fetch(hub.url + f"/v1/bundles/{v2['version']}/activate", hub.auth("operator"), method="POST", data=b"")
    assert activated.status == 200
    wait_for(lambda: all(health(e.url)["model_version"] == v2["version"] for e in edges))
    assert fetch(hub.url + "/v1/bundles/999/activate", hub.auth("operator"), method="POST", data=b"").status == 404
    actions = [e["action"] for e in json.loads(fetch(hub.url + "/v1/audit?limit=1000", hub.auth("admin")).body)["entries"]]
    assert {"bundles.upload", "bundles.rollback", "bundles.activate", "bundles.read"} <= set(actions)

    edges[1].stop()
    wait_for(lambda: fleet()["shop-1"]["stale"] is True, timeout_s=10)
    assert fleet()["shop-0"]["stale"] is False


def test_an_edge_notices_other_bytes_under_the_version_it_runs(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, tmp_path: Path
) -> None:
    """A store that was reset (or written around the hub) may name known version
    numbers with other bytes: the edge compares the digest and swaps."""
    key = str(trained_bundle.public_key)
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key)
    first = trained_bundle.path.read_bytes()
    asyncio.run(publish_raw(nats_server, "bundle-v1.tar", first, 1))
    wait_for(lambda: health(edge.url)["model_sha256"] == hashlib.sha256(first).hexdigest(), timeout_s=60)
    other = Path(str(_train(trained_bundle, tmp_path / "other")["bundle"])).read_bytes()
    assert other != first
    asyncio.run(publish_raw(nats_server, "bundle-v1.tar", other, 1))
    wait_for(lambda: health(edge.url)["model_sha256"] == hashlib.sha256(other).hexdigest(), timeout_s=60)
    assert health(edge.url)["model_version"] == 1 and health(edge.url)["bundle_error"] == ""


def test_push_fails_fast_with_one_line_when_the_hub_is_away(trained_bundle: TrainedBundle) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "push", str(trained_bundle.path), "--hub", f"http://127.0.0.1:{port}", "--token", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and time.monotonic() - started < 10
    assert done.stderr.count("\n") == 1 and "unreachable" in done.stderr and "Traceback" not in done.stderr
