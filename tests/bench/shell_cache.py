"""Shell cache under a flood of distinct URLs: memory and disk of the agent stay flat.

Starts the demo origin (shareable shells, ``Cache-Control: public``) and one agent in
filter mode, then requests ``--urls`` distinct cacheable URLs (a query string makes each
one new) with ``--concurrency`` clients, sampling the agent's RSS and the size of its
SQLite file (with the WAL) every tenth of the run. Bounded by ``--max-seconds``.

    python tests/bench/shell_cache.py [--urls 100000] [--concurrency 32] [--max-seconds 600]

Prints a table and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from p13n.procs import DEFAULT_TEMPLATES, free_port, p13n_command, spawn, wait_http  # noqa: E402


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        out.extend(int(k) for k in kids)
    return out


def rss_mb(pid: int) -> float:
    """RSS of the agent's process tree (the server's main process and its worker)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            todo.extend(_children(current))
        except OSError:
            continue
    return total / 1024


def disk_mb(data_dir: Path) -> float:
    return sum(p.stat().st_size for p in data_dir.glob("edge.sqlite3*")) / 1e6


async def flood(url: str, total: int, concurrency: int, deadline: float, on_progress: Any) -> tuple[int, int]:
    sent = ok = 0
    lock = asyncio.Lock()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent, ok
        while time.monotonic() < deadline:
            async with lock:
                if sent >= total:
                    return
                sent += 1
                i = sent
            async with session.get(f"{url}/p/dr01?flood={i}") as resp:
                await resp.read()
                ok += resp.status == 200
            if i % max(total // 10, 1) == 0:
                on_progress(i)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return sent, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="p13n-shell-bench-"))
    origin_port, agent_port = free_port(), free_port()
    origin = spawn(
        "origin", p13n_command("origin", "serve", "--port", str(origin_port), "--templates", str(DEFAULT_TEMPLATES)), work
    )
    data_dir = work / "edge"
    agent = spawn(
        "edge",
        p13n_command("edge", "serve"),
        work,
        {
            "P13N_EDGE_LISTEN": f"127.0.0.1:{agent_port}",
            "P13N_EDGE_ORIGIN": f"http://127.0.0.1:{origin_port}",
            "P13N_EDGE_DATA_DIR": str(data_dir),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
            "P13N_EDGE_NATS_URL": "nats://127.0.0.1:1",  # no NATS: the page path never needs it
        },
    )
    samples: list[dict[str, float]] = []
    try:
        wait_http(origin, f"http://127.0.0.1:{origin_port}/healthz")
        wait_http(agent, f"http://127.0.0.1:{agent_port}/_p13n/healthz")
        started = time.monotonic()

        def sample(done: int) -> None:
            samples.append(
                {
                    "urls": done,
                    "seconds": round(time.monotonic() - started, 1),
                    "rss_mb": round(rss_mb(agent.proc.pid), 1),
                    "disk_mb": round(disk_mb(data_dir), 1),
                }
            )

        sample(0)
        sent, ok = asyncio.run(
            flood(f"http://127.0.0.1:{agent_port}", args.urls, args.concurrency, started + args.max_seconds, sample)
        )
        sample(sent)
        elapsed = time.monotonic() - started
    finally:
        agent.stop()
        origin.stop()

    print(f"{'urls':>8} {'s':>7} {'rss MB':>8} {'disk MB':>8}")
    for s in samples:
        print(f"{s['urls']:>8} {s['seconds']:>7} {s['rss_mb']:>8} {s['disk_mb']:>8}")
    later = [s for s in samples if s["urls"] >= args.urls * 0.3]
    result = {
        "bench": "shell_cache",
        "machine": f"{platform.machine()} {platform.node()}",
        "urls": sent,
        "ok": ok,
        "seconds": round(elapsed, 1),
        "pages_per_s": round(sent / elapsed, 1),
        "rss_mb_first": samples[0]["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "rss_mb_last": samples[-1]["rss_mb"],
        "disk_mb_max": max(s["disk_mb"] for s in samples),
        "disk_mb_last": samples[-1]["disk_mb"],
        # flat: after the caches fill (30 % of the run), growth to the end
        "rss_growth_after_fill_mb": round(samples[-1]["rss_mb"] - later[0]["rss_mb"], 1) if later else None,
        "disk_growth_after_fill_mb": round(samples[-1]["disk_mb"] - later[0]["disk_mb"], 1) if later else None,
        "samples": samples,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
