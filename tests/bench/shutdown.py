"""Shutdown benchmark: seconds from SIGTERM to exit, idle and busy, for the hub and the
edge agent (real processes beside a real nats-server).

Idle: the service is ready and nothing is in flight. Busy: the hub has a stream of
events to ingest (it stops mid-way; what it had not acknowledged stays in NATS), the
edge is answering collect requests from a client thread. Each case runs ``--rounds``
times; the time is until every process of the service (server, worker, preparation
workers) is gone; the log must show the service's own "stopped" line (its shutdown
ran) and no traceback.

    python tests/bench/shutdown.py [--rounds 3]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import nats  # noqa: E402

from models import nats_layout as L  # noqa: E402
from p13n.procs import DEFAULT_TEMPLATES, Child, free_port, p13n_command, spawn, start_nats, wait_http  # noqa: E402


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants (the server's main process, its worker, the hub's
    preparation workers)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, todo = {pid}, [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        tree.update(kids)
        todo.extend(kids)
    return tree


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stop(child: Child) -> float:
    """Seconds from SIGTERM until every process of the service is gone."""
    tree = _tree(child.proc.pid)
    started = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    child.proc.wait(30)
    while any(_alive(p) for p in tree) and time.monotonic() - started < 30:
        time.sleep(0.005)
    return time.monotonic() - started


def _children_left(pid: int) -> int:
    left = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                status = (proc / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                left += 1
    return left


async def _fill(url: str, events: int) -> None:
    from hub.nats_setup import ensure_layout

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_layout(js)
    batch = [{"event_id": f"sd{i:010d}", "type": "page_view", "url": "https://s.example/"} for i in range(500)]
    for n in range(events // 500):
        for e in batch:
            e["event_id"] = f"sd{n:05d}{e['event_id'][7:]}"
        await js.publish(L.events_subject("bench"), json.dumps(batch).encode(), headers={"Nats-Msg-Id": f"sd-{n}"})
    await nc.close()


def hub_case(work: Path, nats_url: str, busy: bool) -> tuple[float, str]:
    port = free_port()
    env = {
        "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
        "P13N_HUB_NATS_URL": nats_url,
        "P13N_HUB_DATA_DIR": str(work / f"hub-{time.monotonic_ns()}"),
        "P13N_ALLOW_DEV_KEYS": "1",
    }
    if busy:
        asyncio.run(_fill(nats_url, 200_000))
    child = spawn("hub", p13n_command("hub", "serve"), work, env)
    wait_http(child, f"http://127.0.0.1:{port}/v1/healthz", timeout_s=30)
    time.sleep(1.0 if busy else 2.0)  # busy: mid-way through the stream
    seconds = _stop(child)
    return seconds, child.log()


def edge_case(work: Path, nats_url: str, origin_port: int, busy: bool) -> tuple[float, str]:
    port = free_port()
    env = {
        "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
        "P13N_EDGE_ORIGIN": f"http://127.0.0.1:{origin_port}",
        "P13N_EDGE_DATA_DIR": str(work / f"edge-{time.monotonic_ns()}"),
        "P13N_EDGE_NATS_URL": nats_url,
        "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
        "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics",
        "P13N_ALLOW_DEV_KEYS": "1",
    }
    child = spawn("edge", p13n_command("edge", "serve"), work, env)
    wait_http(child, f"http://127.0.0.1:{port}/_p13n/healthz")
    stop = threading.Event()

    def load() -> None:  # bounded: it ends with the edge
        body = json.dumps({"events": [{"type": "page_view", "url": "https://s.example/"}] * 10}).encode()
        while not stop.is_set():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/_p13n/collect", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(req, timeout=2).read()
            except OSError:
                return

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4 if busy else 0)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    seconds = _stop(child)
    stop.set()
    for t in threads:
        t.join(5)
    return seconds, child.log()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nats_child, nats_port = start_nats(work / "nats")
        nats_url = f"nats://127.0.0.1:{nats_port}"
        origin_port = free_port()
        origin = spawn(
            "origin", p13n_command("origin", "serve", "--port", str(origin_port), "--templates", str(DEFAULT_TEMPLATES)), work
        )
        wait_http(origin, f"http://127.0.0.1:{origin_port}/healthz")
        results: dict[str, list[float]] = {}
        problems: list[str] = []
        try:
            for name in ("hub_idle", "hub_busy", "edge_idle", "edge_busy"):
                busy = name.endswith("busy")
                for _ in range(args.rounds):
                    if name.startswith("hub"):
                        seconds, log = hub_case(work, nats_url, busy)
                    else:
                        seconds, log = edge_case(work, nats_url, origin_port, busy)
                    results.setdefault(name, []).append(round(seconds, 3))
                    if "never retrieved" in log or "Traceback" in log or " stopped" not in log:
                        problems.append(f"{name}: {log[-400:]}")
        finally:
            origin.stop()
            nats_child.stop()
        left = _children_left(os.getpid())
    print(f"{'case':<10} {'median s':>9} {'max s':>7}")
    for name, values in results.items():
        print(f"{name:<10} {statistics.median(values):>9.3f} {max(values):>7.3f}")
    for p in problems:
        print("problem:", p)
    summary = {
        "bench": "shutdown",
        "machine": f"{platform.machine()} {platform.python_version()}",
        "rounds": args.rounds,
        **{f"{k}_median_s": statistics.median(v) for k, v in results.items()},
        **{f"{k}_max_s": max(v) for k, v in results.items()},
        "problems": len(problems),
        "children_left": left,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
