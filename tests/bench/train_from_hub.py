"""A training run at scale: from a warehouse of 1M events to the bundle live on the edge.

Builds a hub warehouse directly in SQLite (``--events`` click events of ``--users``
consenting visitors over ``--items`` catalog items with titles, planted taste groups,
spread over the last 30 days; the marts folded), starts nats-server, the hub (training
on, tuning off unless ``--tune``) and an edge agent, and times two runs started with
``POST /v1/training/runs``, each from the request to the new version live on the edge:

1. nothing live yet: read, train, push;
2. after ``--fresh`` new clicks through ``POST /v1/events``, against the bundle of
   run 1: read, train a challenger on what came before them, score both on them (the
   holdout the live bundle has not seen), train the bundle to ship, push.

    python tests/bench/train_from_hub.py [--events 1000000] [--users 50000] [--items 20000]

Everything listens on 127.0.0.1 and every wait is bounded. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.auth import create_token  # noqa: E402
from hub.storage.sqlite import SqliteStore  # noqa: E402
from models.bundle import generate_key  # noqa: E402
from p13n.procs import Child, free_port, p13n_command, spawn, start_nats, wait_http  # noqa: E402


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(data: Path, events: int, users: int, items: int, groups: int = 50) -> float:
    """The warehouse; returns seconds taken."""
    t0 = time.perf_counter()
    store = SqliteStore(data)
    store.close()
    wh = sqlite3.connect(data / "warehouse.sqlite")
    wh.execute("PRAGMA synchronous=OFF")
    rng = random.Random(5)
    now = datetime.now(UTC)
    per_group = items // groups
    wh.executemany(
        "INSERT INTO items (item_id, title, description, tags, category, price_minor, currency, url, updated) "
        "VALUES (?, ?, '', ?, ?, 1000, 'EUR', ?, '')",
        [
            (f"sku{i:05d}", f"Item {i} of line {i // per_group}", f"line{i // per_group}", f"cat{i % 12}", f"/p/sku{i:05d}")
            for i in range(items)
        ],
    )
    consent = []
    for u in range(users):
        when = iso(now - timedelta(days=31))
        doc = json.dumps({"categories": ["analytics", "necessary", "personalization"], "source": "banner"})
        consent.append(
            (f"c{u:010d}", "consent", when, when, "bench", f"benchvisitor{u:011d}", None, None, None, None, None, doc, None)
        )
    wh.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", consent)
    chunk = []
    for n in range(events):
        u = n % users
        group = u % groups
        item = group * per_group + rng.randrange(per_group) if rng.random() < 0.8 else rng.randrange(items)
        when = iso(now - timedelta(seconds=rng.uniform(0, 30 * 86400)))
        chunk.append(
            (
                f"e{n:012d}",
                "click",
                when,
                when,
                "bench",
                f"benchvisitor{u:011d}",
                None,
                f"sku{item:05d}",
                None,
                None,
                None,
                None,
                None,
            )
        )
        if len(chunk) >= 200_000:
            wh.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
            chunk.clear()
    wh.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
    wh.execute("INSERT INTO counters VALUES ('accepted', ?)", (events + users,))
    wh.commit()
    wh.close()
    store = SqliteStore(data)
    while store.refresh_marts():
        pass
    store.close()
    return time.perf_counter() - t0


API_KEY = "bench-api-key-0123456789"


def fresh_clicks(hub: str, users: int, items: int, count: int, groups: int = 50) -> int:
    """``count`` clicks in the visitors' tastes, sent now through ``POST /v1/events``."""
    rng = random.Random(9)
    per_group = items // groups
    now = int(time.time() * 1000)
    batch: list[dict[str, Any]] = []
    sent = 0
    for n in range(count):
        u = rng.randrange(users)
        item = (u % groups) * per_group + rng.randrange(per_group)
        batch.append(
            {
                "event_id": f"fresh{n:012d}",
                "type": "click",
                "anonymous_id": f"benchvisitor{u:011d}",
                "item_id": f"sku{item:05d}",
                "ts": now,
            }
        )
        if len(batch) == 500 or n == count - 1:
            req = urllib.request.Request(
                hub + "/v1/events",
                data=json.dumps(batch).encode(),
                method="POST",
                headers={"x-api-key": API_KEY, "content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as r:
                sent += json.loads(r.read())["accepted"]
            batch = []
    return sent


def call(url: str, token: str, method: str = "GET", body: bytes | None = None) -> Any:
    req = urllib.request.Request(url, data=body, method=method, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def edge_version(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz", timeout=5) as r:
        return json.loads(r.read()).get("model_version")


def timed_run(hub: str, token: str, edge_port: int, timeout_s: float = 600) -> dict[str, Any]:
    t0 = time.monotonic()
    run = call(hub + "/v1/training/runs", token, "POST", b"")["run"]
    record: dict[str, Any] = {}
    while time.monotonic() - t0 < timeout_s:
        record = call(hub + f"/v1/training/runs/{run['id']}", token)
        if record["status"] != "running":
            break
        time.sleep(0.5)
    if record.get("status") not in ("passed", "forced"):
        raise SystemExit(f"run did not ship: {record.get('status')}: {record.get('reason')}")
    while edge_version(edge_port) != record["version"]:
        if time.monotonic() - t0 > timeout_s:
            raise SystemExit("the edge never took the new bundle")
        time.sleep(0.1)
    return {"request_to_live_s": round(time.monotonic() - t0, 1), "timings_s": record["timings"], "gate": record["gate"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--fresh", type=int, default=20_000, help="clicks sent between the two runs (the gated run's holdout)")
    ap.add_argument("--tune", action="store_true", help="runs search hyperparameters (P13N_HUB_TRAINING_TUNE=true)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p13n-train-hub-"))
    build_s = build(work / "hub", args.events, args.users, args.items)
    keys = work / "keys"
    keys.mkdir()
    private, public = generate_key()
    (keys / "signing.key").write_bytes(private)
    (keys / "signing.pub").write_bytes(public)
    token = create_token(work / "tokens.json", "bench", "operator")
    children: list[Child] = []
    try:
        nats_port = free_port()
        nats_child, _ = start_nats(work / "nats", port=nats_port)
        children.append(nats_child)
        nats_url = f"nats://127.0.0.1:{nats_port}"
        hub_port, edge_port = free_port(), free_port()
        hub_env = {
            "P13N_HUB_LISTEN": f"127.0.0.1:{hub_port}",
            "P13N_HUB_NATS_URL": nats_url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_HUB_TOKENS_FILE": str(work / "tokens.json"),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_BUNDLE_PUBLIC_KEY": str(keys / "signing.pub"),
            "P13N_HUB_TRAINING_KEY": str(keys / "signing.key"),
            "P13N_HUB_TRAINING_INTERVAL_S": "86400",
            "P13N_HUB_TRAINING_TUNE": "true" if args.tune else "false",
            "P13N_HUB_API_KEYS": API_KEY,
        }
        hub = spawn("hub", p13n_command("hub", "serve"), work, hub_env)
        children.append(hub)
        edge = spawn(
            "edge",
            p13n_command("edge", "serve"),
            work,
            {
                "P13N_EDGE_LISTEN": f"127.0.0.1:{edge_port}",
                "P13N_EDGE_ORIGIN": "http://127.0.0.1:9",
                "P13N_EDGE_DATA_DIR": str(work / "edge"),
                "P13N_EDGE_NATS_URL": nats_url,
                "P13N_EDGE_BUNDLE_PUBLIC_KEY": str(keys / "signing.pub"),
                "P13N_ALLOW_DEV_KEYS": "1",
            },
        )
        children.append(edge)
        hub_url = f"http://127.0.0.1:{hub_port}"
        wait_http(hub, hub_url + "/v1/healthz", timeout_s=60)
        wait_http(edge, f"http://127.0.0.1:{edge_port}/_p13n/healthz", timeout_s=60)
        first = timed_run(hub_url, token, edge_port)
        fresh = fresh_clicks(hub_url, args.users, args.items, args.fresh)  # after bundle 1: its holdout
        second = timed_run(hub_url, token, edge_port)
        result = {
            "bench": "train_from_hub",
            "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "events": args.events,
            "users": args.users,
            "items": args.items,
            "build_warehouse_s": round(build_s, 1),
            "fresh_events": fresh,
            "first_run": first,
            "gated_run": second,
        }
        print(
            f"request → live on the edge: {first['request_to_live_s']} s with nothing live, "
            f"{second['request_to_live_s']} s with the gate against it (goal ≤ 90)"
        )
        print(json.dumps(result))
    finally:
        for child in reversed(children):
            child.stop()


if __name__ == "__main__":
    main()
