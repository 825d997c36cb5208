"""Bundles over NATS: push → every edge swaps; a tampered bundle is refused everywhere
and reported; an edge restarted without NATS serves the bundle it last accepted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import nats

from models import nats_layout as L
from tests.conftest import AgentFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch, metric, wait_for


def health(url: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(fetch(url + "/_p13n/healthz").body)
    return data


async def publish_raw(nats_url: str, name: str, data: bytes, version: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await (await js.object_store(L.MODELS_BUCKET)).put(name, data)
    pointer = {"name": name, "version": version, "sha256": hashlib.sha256(data).hexdigest()}
    await (await js.key_value(L.CONTROL_BUCKET)).put(L.CURRENT_BUNDLE_KEY, json.dumps(pointer).encode())
    await nc.close()


def test_push_swaps_every_edge_and_tampering_is_refused(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory
) -> None:
    key = str(trained_bundle.public_key)
    edges = [start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID=f"edge-{i}") for i in range(2)]
    assert all(health(e.url)["model_version"] is None for e in edges)
    pushed = subprocess.run(
        [sys.executable, "-m", "p13n", "push", str(trained_bundle.path), "--public-key", key, "--nats-url", nats_server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"] == 1
    wait_for(lambda: all(health(e.url)["model_version"] == 1 for e in edges))
    decided = json.loads(fetch(edges[0].url + "/_p13n/decide?slots=hero&page=/").body)
    assert decided["model_version"] == 1 and decided["segment"]

    data = bytearray(trained_bundle.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    asyncio.run(publish_raw(nats_server, "bundle-v2.tar", bytes(data), 2))
    wait_for(lambda: all("refused" in str(health(e.url)["bundle_error"]) for e in edges))
    assert all(health(e.url)["model_version"] == 1 for e in edges)  # still serving the old one
    assert metric(fetch(edges[1].url + "/_p13n/metrics").text, "p13n_edge_bundles_refused_total") == 1

    # an unsigned tar is refused the same way
    asyncio.run(publish_raw(nats_server, "bundle-v3.tar", b"not a bundle", 3))
    wait_for(lambda: "bundle-v3.tar" in str(health(edges[0].url)["bundle_error"]))

    # the CLI never pushes what it cannot verify
    bad = subprocess.run(
        [sys.executable, "-m", "p13n", "push", "/dev/null", "--public-key", key, "--nats-url", nats_server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1


def test_edge_restarted_without_nats_serves_the_last_accepted_bundle(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory
) -> None:
    key = str(trained_bundle.public_key)
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key)
    subprocess.run(
        [sys.executable, "-m", "p13n", "push", str(trained_bundle.path), "--public-key", key, "--nats-url", nats_server],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(lambda: health(edge.url)["model_version"] == 1)
    edge.stop()
    offline = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", BUNDLE_PUBLIC_KEY=key, DATA_DIR=str(edge.data_dir))
    h = health(offline.url)
    assert h["model_version"] == 1 and h["nats"] == "disconnected"
    page = fetch(offline.url + "/p/dr01")
    assert page.status == 200 and "<p13n-slot" not in page.text


def test_fleet_view_activate_and_rollback(
    nats_server: str, origin: Origin, trained_bundle: TrainedBundle, start_agent: AgentFactory, start_hub, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, EDGE_STALE_S="1.5")
    edges = [
        start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID=f"shop-{i}", STATUS_INTERVAL_S="0.3")
        for i in range(2)
    ]
    # a second version: retrain into the same output directory
    out_dir = trained_bundle.path.parent
    shutil.copy(trained_bundle.path, tmp_path / "v1.tar")
    second = subprocess.run(
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
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    v2 = json.loads(second.stdout)
    for path in (tmp_path / "v1.tar", v2["bundle"]):
        subprocess.run(
            [sys.executable, "-m", "p13n", "push", str(path), "--public-key", key, "--nats-url", nats_server],
            check=True,
            capture_output=True,
            timeout=60,
        )
    wait_for(lambda: all(health(e.url)["model_version"] == v2["version"] for e in edges))

    def fleet() -> dict[str, dict[str, object]]:
        return {e["edge_id"]: e for e in json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)["edges"]}

    wait_for(lambda: set(fleet()) == {"shop-0", "shop-1"} and all(e["model_version"] == v2["version"] for e in fleet().values()))
    assert not any(e["stale"] for e in fleet().values())

    rolled = subprocess.run(
        [sys.executable, "-m", "p13n", "bundle", "rollback", "--nats-url", nats_server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["version"] == 1
    wait_for(lambda: all(health(e.url)["model_version"] == 1 for e in edges))

    activated = fetch(hub.url + f"/v1/bundles/{v2['version']}/activate", hub.auth("operator"), method="POST", data=b"")
    assert activated.status == 200
    wait_for(lambda: all(health(e.url)["model_version"] == v2["version"] for e in edges))
    assert fetch(hub.url + "/v1/bundles/999/activate", hub.auth("operator"), method="POST", data=b"").status == 404

    edges[1].stop()
    wait_for(lambda: fleet()["shop-1"]["stale"] is True, timeout_s=10)
    assert fleet()["shop-0"]["stale"] is False
