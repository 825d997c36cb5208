"""The learning loop with the real components: events through the hub's API into the
warehouse, a training run started over the API, the gate against the live bundle, the
new bundle live on the edge with the live bundle's slots carried over, the run's record
and report; one run at a time; bad requests refused."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import API_KEY, DEFAULT_TEMPLATES, AgentFactory, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import descendants, fetch, wait_for
from tests.integration.ingest_helpers import wait_accepted
from tests.integration.test_bundle_sync import health, p13n

DAY_MS = 86_400_000
TRAINING_LIBS = ("/sklearn/", "/implicit/", "/skl2onnx/", "/matplotlib/")


def mapped_files(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def catalog() -> dict[str, list[str]]:
    """Demo catalog item ids by category: the visitors' tastes."""
    out: dict[str, list[str]] = {}
    for item in json.loads((DEFAULT_TEMPLATES / "catalog.json").read_text()):
        out.setdefault(item["category"], []).append(item["id"])
    return out


def population(visitors: int, seed: int) -> list[dict[str, Any]]:
    """Consenting visitors, each with a favourite category: clicks on its items over the
    past five days, and on two more of them just now (the holdout: the live bundle has
    not seen them)."""
    rnd = random.Random(seed)
    tastes = catalog()
    now = int(time.time() * 1000)
    events: list[dict[str, Any]] = []
    for n in range(visitors):
        visitor = f"visitorLoop{seed:02d}{n:010d}"
        items = rnd.sample(sorted(tastes[sorted(tastes)[n % len(tastes)]]), 4)
        consent = ["necessary", "analytics", "personalization"]
        events.append(
            {
                "event_id": uuid.uuid4().hex,
                "type": "consent",
                "anonymous_id": visitor,
                "categories": consent,
                "source": "banner",
                "ts": now - 6 * DAY_MS,
            }
        )
        for item in items[:2]:
            events.append(
                {
                    "event_id": uuid.uuid4().hex,
                    "type": "click",
                    "anonymous_id": visitor,
                    "item_id": item,
                    "ts": now - rnd.randint(1, 5) * DAY_MS,
                }
            )
        for item in items[2:]:
            events.append(
                {
                    "event_id": uuid.uuid4().hex,
                    "type": "click",
                    "anonymous_id": visitor,
                    "item_id": item,
                    "ts": now - rnd.randint(0, 3000),  # just now: after the live bundle was made
                }
            )
    return events


def post_events(hub: Any, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 500):
        reply = fetch(
            hub.url + "/v1/events",
            {"x-api-key": API_KEY, "content-type": "application/json"},
            "POST",
            json.dumps(events[i : i + 500]).encode(),
        )
        assert reply.status == 202 and json.loads(reply.body)["rejected"] == 0, reply.body


def finished(hub: Any, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = {}

    def done() -> bool:
        nonlocal run
        run = json.loads(fetch(hub.url + f"/v1/training/runs/{run_id}", hub.auth("analyst")).body)
        return run["status"] != "running"

    wait_for(done, timeout_s=180)
    return run


def test_a_training_run_ships_a_bundle_learned_from_the_warehouse_to_the_edge(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    tmp_path: Path,
    hub_backend: dict[str, str],
) -> None:
    """On each storage backend (the run's child process reads PostgreSQL too)."""
    key = str(trained_bundle.public_key)
    signing = str(Path(key).with_name("bundle-signing.key"))
    hub = start_hub(
        nats_server,
        **hub_backend,
        BUNDLE_PUBLIC_KEY=key,
        TRAINING_KEY=signing,
        TRAINING_INTERVAL_S="3600",
        TRAINING_TUNE="false",
        TRAINING_HOLDOUT_DAYS="0.5",
        TRAINING_MIN_SUBJECTS="10",
        TRAINING_MIN_INTERACTIONS="50",
    )
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID="edge-loop")
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == 1)

    # bad requests: refused with a reason, nothing started
    bad = fetch(hub.url + "/v1/training/runs", hub.auth("operator"), "POST", b'{"force": "yes"}')
    assert bad.status == 400 and json.loads(bad.body)["error"]["reason"] == "bad_request"
    assert fetch(hub.url + "/v1/training/runs/nonsense", hub.auth("analyst")).status == 404
    assert json.loads(fetch(hub.url + "/v1/training/runs", hub.auth("analyst")).body)["runs"] == []

    events = population(160, seed=1)
    post_events(hub, events)
    wait_accepted(hub, len(events))

    started = fetch(hub.url + "/v1/training/runs", hub.auth("operator"), "POST", b"")
    assert started.status == 202, started.body
    run_id = json.loads(started.body)["run"]["id"]
    busy = fetch(hub.url + "/v1/training/runs", hub.auth("operator"), "POST", b"")
    assert busy.status == 409 and json.loads(busy.body)["error"]["reason"] == "run_in_progress"

    run = finished(hub, run_id)
    assert run["status"] == "passed", run
    assert run["version"] == 2 and run["pushed"] is True and run["live_version"] == 1
    assert run["summary"]["subjects"] == 160 and run["summary"]["left_out"]["erased"] == 0
    gate = run["gate"]
    assert gate["champion"] is not None and gate["challenger"]["users"] >= 100
    assert gate["challenger"]["ndcg"] >= gate["champion"]["ndcg"] * 0.95
    assert set(run["timings"]) >= {"read", "train_challenger", "score", "train"}
    assert any("gate: passed" in line for line in run["progress"])
    assert run["report"]["version"] == 2

    wait_for(lambda: health(edge.url)["model_version"] == 2)
    decided = json.loads(fetch(edge.url + "/_p13n/decide?slots=hero,recommend&page=/").body)
    assert decided["model_version"] == 2 and set(decided["slots"]) == {"hero", "recommend"}  # slots carried over
    html = fetch(hub.url + f"/v1/training/runs/{run_id}/report.html", hub.auth("analyst"))
    assert html.status == 200 and "bundle v2" in html.text
    audit = json.loads(fetch(hub.url + "/v1/audit?limit=200", hub.auth("admin")).body)["entries"]
    (entry,) = [e for e in audit if e["action"] == "training.run" and e["status"] == 202]
    assert entry["actor"] == "test-operator" and entry["detail"] == {"run": run_id, "force": False}
    # the training ran in a child process: the hub's own processes never loaded the
    # training libraries (they stay out of the serving process's memory)
    loaded = {
        lib for pid in [hub.child.proc.pid, *descendants(hub.child.proc.pid)] for lib in TRAINING_LIBS if lib in mapped_files(pid)
    }
    assert loaded == set()
    (activation,) = [e for e in audit if e["action"] == "bundles.activate" and e["actor"] == "training"]
    assert activation["detail"]["run"] == run_id and activation["detail"]["version"] == 2
    listing = json.loads(fetch(hub.url + "/v1/training/runs", hub.auth("viewer")).body)
    assert listing["error"]["reason"] == "forbidden"

    # the same from a training box: p13n train --from-hub --push compares with the hub's
    # live bundle (fetched over the API) and pushes only what passes
    pushed = subprocess.run(
        [
            sys.executable, "-m", "p13n", "train", "--from-hub", "--data-dir", str(hub.data_dir), "--out", str(tmp_path / "box"),
            "--key", signing, "--no-tune", "--holdout-days", "0.5", "--min-subjects", "10", "--push",
            "--hub", hub.url, "--token", hub.tokens["operator"],
        ],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "P13N_HUB_DATABASE_URL": hub.database_url},  # the warehouse it reads, on PostgreSQL
    )  # fmt: skip
    outcome = json.loads(pushed.stdout.splitlines()[-1])
    assert outcome["gate"]["champion"] is not None, pushed.stderr[-2000:]  # compared with v2, the live one
    if pushed.returncode == 0:
        assert outcome["version"] == 3 and "pushed as v3" in outcome["reason"]
        wait_for(lambda: health(edge.url)["model_version"] == 3)
    else:
        assert pushed.returncode == 4 and outcome["outcome"] == "rejected" and health(edge.url)["model_version"] == 2
