"""Ingestion benchmark.

1. Hub: pre-fill ``P13N_EVENTS`` with N events (default 1,000,000, 500 per message, as
   edges publish), then start one hub process and time it until every tier holds every
   event: the warehouse's ``accepted`` counter reaches N (the lake commits before the
   warehouse) and the marts' watermark reaches the warehouse's newest event
   (``hub_warehouse_seconds`` is when the warehouse alone got there).
2. Edge: ``POST /_p13n/collect`` with batches of 10 events through nginx (filter-mode
   config) for a fixed time with wrk (a bounded Python load generator without wrk),
   while the agent's outbox drains to NATS.

    python tests/bench/ingest.py [--events 1000000] [--duration 10]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import nats  # noqa: E402
import orjson  # noqa: E402

from edge_agent.nginx_config import NginxOptions  # noqa: E402
from hub.nats_setup import ensure_layout  # noqa: E402
from models.nats_layout import events_subject  # noqa: E402
from p13n.procs import DEFAULT_TEMPLATES, Child, free_port, p13n_command, spawn, start_nats, start_nginx, wait_http  # noqa: E402

PER_MESSAGE = 500


def make_event(i: int, received: str) -> dict[str, object]:
    kind = ("page_view", "click", "scroll", "add_to_cart")[i % 4]
    e: dict[str, object] = {
        "event_id": f"{i:016x}{uuid.uuid4().hex[:8]}",
        "type": kind,
        "ts": 1_764_000_000_000 + i,
        "received_at": received,
        "edge": "bench",
        "anonymous_id": f"visitor{i % 50_000:015d}",
        "url": f"https://shop.example/p/i{i % 20_000}?utm_source=bench",
        "context": {"device": "mobile", "country": "DE", "local_hour": 12},
    }
    if kind in ("click", "add_to_cart"):
        e["item_id"] = f"i{i % 20_000}"
    if kind == "scroll":
        e["depth"] = 50
    return e


async def prefill(url: str, events: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_layout(js)
    received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    started = time.perf_counter()
    pending = []
    for start in range(0, events, PER_MESSAGE):
        payload = orjson.dumps([make_event(i, received) for i in range(start, min(start + PER_MESSAGE, events))])
        pending.append(js.publish(events_subject("bench"), payload, headers={"Nats-Msg-Id": f"bench:{start}"}))
        if len(pending) >= 200:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    return time.perf_counter() - started


def _read(path: Path, sql: str) -> tuple[int, ...] | None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(sql).fetchone()
        return tuple(int(v or 0) for v in row) if row else None
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        db.close()


def _warehouse_progress(hub_dir: Path) -> tuple[int, int]:
    """(events accepted, newest event rowid)."""
    accepted = _read(hub_dir / "warehouse.sqlite", "SELECT value FROM counters WHERE name = 'accepted'")
    top = _read(hub_dir / "warehouse.sqlite", "SELECT max(rowid) FROM events")
    return (accepted[0] if accepted else 0), (top[0] if top else 0)


def _marts_watermark(hub_dir: Path) -> int:
    mark = _read(hub_dir / "marts.sqlite", "SELECT rowid FROM watermarks WHERE name = 'events'")
    return mark[0] if mark else 0


def hub_rate(work: Path, nats_url: str, events: int) -> dict[str, float]:
    port = free_port()
    hub = spawn(
        "hub",
        p13n_command("hub", "serve"),
        work,
        {
            "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
            "P13N_HUB_NATS_URL": nats_url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_ALLOW_DEV_KEYS": "1",
        },
    )
    try:
        wait_http(hub, f"http://127.0.0.1:{port}/v1/healthz", timeout_s=30)
        started = time.perf_counter()
        deadline = started + 600
        accepted = 0
        warehouse_s = 0.0
        while time.perf_counter() < deadline:
            accepted, top = _warehouse_progress(work / "hub")
            if accepted >= events and not warehouse_s:
                warehouse_s = time.perf_counter() - started
            # every tier: the marts have folded the warehouse's last event too
            if warehouse_s and _marts_watermark(work / "hub") >= top:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        return {
            "hub_events": float(accepted),
            "hub_seconds": round(elapsed, 2),
            "hub_events_per_s": round(accepted / elapsed, 0),
            "hub_warehouse_seconds": round(warehouse_s, 2),
        }
    finally:
        hub.stop()


def edge_rate(work: Path, nats_url: str, duration: int) -> dict[str, float | str]:
    children: list[Child] = []
    try:
        o_port, a_port, n_port = free_port(), free_port(), free_port()
        children.append(
            spawn("origin", p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(DEFAULT_TEMPLATES)), work)
        )
        children.append(
            spawn(
                "edge",
                p13n_command("edge", "serve"),
                work,
                {
                    "P13N_EDGE_LISTEN": f"127.0.0.1:{a_port}",
                    "P13N_EDGE_WORKERS": "1",  # as its figures in docs/PERFORMANCE.md were measured
                    "P13N_EDGE_ORIGIN": f"http://127.0.0.1:{o_port}",
                    "P13N_EDGE_DATA_DIR": str(work / "edge"),
                    "P13N_ALLOW_DEV_KEYS": "1",
                    "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
                    "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
                    "P13N_EDGE_NATS_URL": nats_url,
                    "P13N_EDGE_ID": "bench-edge",
                    "P13N_EDGE_OUTBOX_MAX_EVENTS": "5000000",
                },
            )
        )
        wait_http(children[-1], f"http://127.0.0.1:{a_port}/_p13n/healthz")
        children.append(
            start_nginx(
                work / "nginx",
                NginxOptions(
                    mode="filter", agent=f"127.0.0.1:{a_port}", origin=f"http://127.0.0.1:{o_port}", listen=f"127.0.0.1:{n_port}"
                ),
            )
        )
        url = f"http://127.0.0.1:{n_port}/_p13n/collect"
        body = json.dumps(
            {
                "events": [
                    {"type": "page_view", "url": f"https://shop.example/p/i{i}", "context": {"tz_offset": 60}} for i in range(10)
                ]
            }
        )
        check = urllib.request.urlopen(
            urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
        )
        assert check.status == 202
        if shutil.which("wrk"):
            script = work / "post.lua"
            script.write_text(
                f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64)"\n'
            )
            out = subprocess.run(
                ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", "-s", str(script), url],
                capture_output=True,
                text=True,
                timeout=duration + 60,
                check=True,
            ).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{a_port}/_p13n/healthz").read())
            return {
                "edge_batches_per_s": round(rps, 0),
                "edge_events_per_s": round(rps * 10, 0),
                "edge_non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
                "edge_p99": p99,
                "edge_outbox_depth_after": float(health["outbox_depth"]),
            }
        raise SystemExit("wrk is required for the edge part (apt-get install wrk)")
    finally:
        for child in reversed(children):
            child.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--hub-only", action="store_true", help="skip the edge collect part")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p13n-ingest-"))
    nats_child, port = start_nats(work / "nats")
    url = f"nats://127.0.0.1:{port}"
    try:
        fill_s = asyncio.run(prefill(url, args.events))
        print(f"pre-filled {args.events} events in {fill_s:.1f} s", flush=True)
        hub = hub_rate(work, url, args.events)
        print(
            f"hub: {hub['hub_events']:.0f} events in {hub['hub_seconds']} s = {hub['hub_events_per_s']:.0f} events/s", flush=True
        )
        edge: dict[str, float | str] = {}
        if not args.hub_only:
            edge = edge_rate(work, url, args.duration)
            print(f"edge: {edge['edge_batches_per_s']:.0f} batches/s of 10 events through nginx", flush=True)
    finally:
        nats_child.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "ingest",
                "events": args.events,
                "prefill_s": round(fill_s, 2),
                **hub,
                **edge,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
