"""Erasure benchmark.

1. Fleet: nats-server, the hub and 5 edge agents (real processes). Subjects browse on
   every edge (sessions, outbox, hub tiers); each is then erased through
   ``DELETE /v1/subjects/{id}``. Measured: time from the request until every edge has
   acknowledged (the hub's own ``completion_s``, and as seen by a client polling
   ``GET /v1/erasures/{id}`` every 10 ms).
2. Hub tiers at scale: a warehouse of 10M events (with the matching lake day files,
   indexes as in production, dead letters) is built directly in SQLite; subjects with
   ~50 events each are erased with the hub's own code (resolve + suppress + delete
   from lake, warehouse and marts + WAL truncation). Measured per erasure.

    python tests/bench/erasure.py [--edges 5] [--erasures 40] [--events 10000000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.auth import create_token  # noqa: E402
from hub.storage.sqlite import SqliteStore  # noqa: E402
from models.erasure import Tokenizer, erasure_token  # noqa: E402
from models.pseudonym import pseudonym  # noqa: E402
from p13n.procs import DEFAULT_TEMPLATES, Child, free_port, p13n_command, spawn, start_nats, wait_http  # noqa: E402

KEY = b"bench-erasure-key"


def pct(samples: list[float], q: int) -> float:
    if len(samples) < 2:
        return round(max(samples), 4)
    return round(statistics.quantiles(samples, n=100, method="inclusive")[q - 1], 4)


def call(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, method=method, headers=headers, data=body)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


# ---------------------------------------------------------------------- fleet
def fleet(work: Path, edges: int, erasures: int) -> dict[str, float]:
    children: list[Child] = []
    try:
        nats_child, nats_port = start_nats(work / "nats")
        children.append(nats_child)
        nats_url = f"nats://127.0.0.1:{nats_port}"
        token = create_token(work / "tokens.json", "bench", "privacy_officer")
        auth = {"authorization": f"Bearer {token}"}
        hub_port = free_port()
        hub_env = {
            "P13N_HUB_LISTEN": f"127.0.0.1:{hub_port}",
            "P13N_HUB_NATS_URL": nats_url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_TOKENS_FILE": str(work / "tokens.json"),
            "P13N_HUB_PSEUDONYM_KEY": KEY.decode(),
        }
        hub = spawn("hub", p13n_command("hub", "serve"), work, hub_env)
        children.append(hub)
        origin_port = free_port()
        origin = spawn("origin", p13n_command("origin", "serve", "--port", str(origin_port)), work)
        children.append(origin)
        hub_url = f"http://127.0.0.1:{hub_port}"
        wait_http(hub, hub_url + "/v1/healthz", timeout_s=60)
        ports = []
        for i in range(edges):
            port = free_port()
            env = {
                "P13N_EDGE_ID": f"bench-{i}",
                "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
                "P13N_EDGE_WORKERS": "1",  # as its figures in docs/PERFORMANCE.md were measured
                "P13N_EDGE_ORIGIN": f"http://127.0.0.1:{origin_port}",
                "P13N_EDGE_DATA_DIR": str(work / f"edge-{i}"),
                "P13N_ALLOW_DEV_KEYS": "1",
                "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
                "P13N_EDGE_NATS_URL": nats_url,
                "P13N_EDGE_PSEUDONYM_KEY": KEY.decode(),
                "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
            }
            child = spawn(f"edge-{i}", p13n_command("edge", "serve"), work, env)
            children.append(child)
            wait_http(child, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=60)
            ports.append(port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, view = call("GET", hub_url + "/v1/edges", auth)
            if len(view.get("erasure_registered") or []) == edges:  # type: ignore[arg-type]
                break
            time.sleep(0.2)
        subjects = [f"benchvisitor{i:012d}" for i in range(erasures)]
        for s in subjects:  # every subject has a session and queued events on every edge
            for port in ports:
                body = json.dumps(
                    [
                        {"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://s.example/p/sh0{k}"}
                        for k in range(1, 4)
                    ]
                ).encode()
                call(
                    "POST",
                    f"http://127.0.0.1:{port}/_p13n/collect",
                    {"content-type": "application/json", "cookie": f"p13n_id={s}"},
                    body,
                )
        time.sleep(2.0)  # sessions flushed to SQLite, events through NATS into the hub
        server_s: list[float] = []
        client_s: list[float] = []
        for s in subjects:
            t0 = time.perf_counter()
            status, started = call("DELETE", f"{hub_url}/v1/subjects/{s}", auth)
            assert status == 202, started
            request_id = str(started["request_id"])
            while True:
                _, st = call("GET", f"{hub_url}/v1/erasures/{request_id}", auth)
                if st.get("status") == "completed":
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"erasure {request_id} did not complete: {st}")
                time.sleep(0.01)
            client_s.append(time.perf_counter() - t0)
            server_s.append(float(st["completion_s"]))  # type: ignore[arg-type]
            acked = cast(dict[str, dict[str, str]], st["edges"])
            assert len(acked) == edges and all(e["status"] == "acknowledged" for e in acked.values())
        return {
            "edges": edges,
            "erasures": len(subjects),
            "completion_p50_s": pct(server_s, 50),
            "completion_p99_s": pct(server_s, 99),
            "completion_max_s": round(max(server_s), 4),
            "client_seen_p50_s": pct(client_s, 50),
            "client_seen_p99_s": pct(client_s, 99),
        }
    finally:
        for child in reversed(children):
            child.stop()


# ---------------------------------------------------------------------- hub tiers at scale
def build_warehouse(data: Path, events: int, days: int = 30, per_subject: int = 50) -> list[str]:
    """Write ``events`` events (visitors with ~per_subject events each, a quarter of them
    identified) into the warehouse and lake day files; returns the erasable subjects."""
    storage = SqliteStore(data)
    storage.close()
    wh = sqlite3.connect(data / "warehouse.sqlite")
    wh.execute("PRAGMA journal_mode=WAL")
    wh.execute("PRAGMA synchronous=OFF")
    for index in ("idx_events_anonymous_id", "idx_events_user_id"):
        wh.execute(f"DROP INDEX IF EXISTS {index}")  # built after the load, as fast as the bulk path allows
    start = datetime(2026, 10, 1, tzinfo=UTC)
    lakes: dict[str, sqlite3.Connection] = {}
    visitors = max(1, events // per_subject)
    rng = random.Random(7)
    chunk: list[tuple[object, ...]] = []
    lake_chunks: dict[str, list[tuple[str, str, str, str]]] = {}

    def flush() -> None:
        wh.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
        chunk.clear()
        for day, rows in lake_chunks.items():
            db = lakes.get(day)
            if db is None:
                db = lakes[day] = sqlite3.connect(data / "lake" / f"events-{day}.sqlite")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS raw_events (event_id TEXT PRIMARY KEY, received_at TEXT, edge TEXT, body TEXT)"
                )
            db.executemany("INSERT INTO raw_events VALUES (?, ?, ?, ?)", rows)
            db.commit()
        lake_chunks.clear()
        wh.commit()

    identities = []
    for n in range(events):
        v = n % visitors
        anon = f"benchvisitor{v:012d}"
        user = pseudonym(f"user-{v}", KEY) if v % 4 == 0 else None
        when = start + timedelta(seconds=(n * days * 86400) // events)
        ts = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event_id = f"{n:016x}{rng.getrandbits(32):08x}"
        item = f"sku{rng.randrange(20000):05d}"
        body = json.dumps({"event_id": event_id, "type": "page_view", "anonymous_id": anon, "user_id": user, "item_id": item})
        chunk.append(
            (event_id, "page_view", ts, ts, "bench", anon, user, item, f"https://s.example/p/{item}", None, None, None, None)
        )
        lake_chunks.setdefault(ts[:10], []).append((event_id, ts, "bench", body))
        if user and n < visitors:
            identities.append((anon, user, ts))
        if len(chunk) >= 200_000:
            flush()
    flush()
    wh.executemany("INSERT OR IGNORE INTO identities VALUES (?, ?, ?)", identities)
    wh.executemany(
        "INSERT INTO dead_letters (received_at, source, reason, detail, raw) VALUES (?, 'bench', 'invalid', '', ?)",
        [("2026-10-02T00:00:00Z", json.dumps({"type": "page_view", "anonymous_id": f"junk{i:08d}"})) for i in range(20_000)],
    )
    wh.commit()
    wh.execute("CREATE INDEX idx_events_anonymous_id ON events (anonymous_id)")
    wh.execute("CREATE INDEX idx_events_user_id ON events (user_id)")
    wh.commit()
    wh.close()
    for db in lakes.values():
        db.close()
    return [f"user-{v}" for v in range(0, min(visitors, 4000), 100) if v % 4 == 0]


def hub_scale(work: Path, events: int, erasures: int) -> dict[str, float]:
    data = work / "hub-scale"
    t0 = time.perf_counter()
    subjects = build_warehouse(data, events)[:erasures]
    build_s = time.perf_counter() - t0
    storage = SqliteStore(data)
    storage.tokenizer = Tokenizer(KEY)
    times: list[float] = []
    deleted_events: list[int] = []
    try:
        total = storage.warehouse.execute("SELECT count(*) FROM events").fetchone()[0]
        for raw in subjects:
            t = time.perf_counter()
            subject = storage.resolve_subject(raw, KEY)
            storage.suppress([erasure_token(i, KEY) for i in subject.all], "bench")
            counts = storage.erase_subject(subject)
            times.append(time.perf_counter() - t)
            deleted_events.append(counts["warehouse.events"])
            assert counts["lake.raw_events"] == counts["warehouse.events"] > 0, counts
    finally:
        storage.close()
    size_gb = sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 1e9
    return {
        "warehouse_events": int(total),
        "data_gb": round(size_gb, 2),
        "build_s": round(build_s, 1),
        "erasures": len(times),
        "events_per_subject": round(statistics.mean(deleted_events), 1),
        "hub_erase_p50_s": pct(times, 50),
        "hub_erase_p99_s": pct(times, 99),
        "hub_erase_max_s": round(max(times), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=5)
    ap.add_argument("--erasures", type=int, default=40)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p13n-erasure-bench-"))
    try:
        result: dict[str, object] = {"fleet": fleet(work, args.edges, args.erasures)}
        print(f"fleet: {result['fleet']}", flush=True)
        if not args.skip_scale:
            result["hub_scale"] = hub_scale(work, args.events, args.erasures)
            print(f"hub at scale: {result['hub_scale']}", flush=True)
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
