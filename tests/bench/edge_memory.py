"""Edge agent memory by catalog size: what to provision per agent process.

For each catalog size (default 5,000, 20,000 and 100,000 items), trains a bundle the
way ``tests/bench/decision.py`` does (``p13n train --no-tune``, 64 ALS factors, 300,000
generated interactions over the catalog, the demo slots), starts an agent with it and
reports its resident memory: with the templates only (no model), with the bundle
loaded, and after ``--sessions`` visitors (three product views each, filling the
in-memory session map) and one reload of the product page for each of them (the model
memos). Also the bundle's size on disk and the training time.

    python tests/bench/edge_memory.py [--items 5000,20000,100000] [--sessions 25000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from decision import PAGE, agent_rss_mb, fill_sessions, make_templates, start_agent, train, visitor

from p13n.procs import free_port


def reload_pages(port: int, visitors: int) -> None:
    """One product page per filled visitor through the agent's filter path (no nginx)."""
    import asyncio

    import aiohttp

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with (
                    sem,
                    http.get(f"http://127.0.0.1:{port}{PAGE}", headers={"Cookie": f"p13n_id={visitor(i)}"}) as r,
                ):
                    await r.read()

            await asyncio.gather(*(one(i) for i in range(visitors)))

    asyncio.run(run())


def measure(work: Path, items: int, sessions: int) -> dict[str, Any]:
    from p13n.procs import spawn, wait_http

    tpl = make_templates(work, items)
    started = time.perf_counter()
    bundle, key = train(work, tpl, items, 300_000)
    train_s = time.perf_counter() - started
    o_port = free_port()
    origin = spawn(
        "origin", [sys.executable, "-m", "p13n", "origin", "serve", "--port", str(o_port), "--templates", str(tpl)], work
    )
    try:
        wait_http(origin, f"http://127.0.0.1:{o_port}/healthz")
        out: dict[str, Any] = {"items": items, "bundle_mb": round(bundle.stat().st_size / 2**20, 1), "train_s": round(train_s, 1)}
        port = free_port()
        agent = start_agent(
            work, tpl, bundle, key, port, MODEL_BUNDLE="", BUNDLE_PUBLIC_KEY="", ORIGIN=f"http://127.0.0.1:{o_port}"
        )
        try:
            time.sleep(1.0)
            out["rss_templates_only_mb"] = round(agent_rss_mb(agent.proc.pid), 1)
        finally:
            agent.stop()
        shutil.rmtree(work / "edge", ignore_errors=True)
        agent = start_agent(work, tpl, bundle, key, port, ORIGIN=f"http://127.0.0.1:{o_port}")
        try:
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz").read())
            assert health["model_version"], health
            time.sleep(1.0)
            out["rss_bundle_loaded_mb"] = round(agent_rss_mb(agent.proc.pid), 1)
            fill_sessions(f"http://127.0.0.1:{port}", sessions, items)
            reload_pages(port, sessions)
            time.sleep(2.0)
            out["rss_with_sessions_mb"] = round(agent_rss_mb(agent.proc.pid), 1)
        finally:
            agent.stop()
        return out
    finally:
        origin.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", default="5000,20000,100000")
    ap.add_argument("--sessions", type=int, default=25_000)
    args = ap.parse_args()
    rows = []
    for items in (int(x) for x in args.items.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"p13n-edge-memory-{items}-"))
        try:
            row = measure(work, items, args.sessions)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'items':>8} {'bundle MB':>10} {'no model':>9} {'bundle':>8} {'+sessions':>10}")
    for r in rows:
        print(
            f"{r['items']:>8} {r['bundle_mb']:>10} {r['rss_templates_only_mb']:>9} "
            f"{r['rss_bundle_loaded_mb']:>8} {r['rss_with_sessions_mb']:>10}"
        )
    print(json.dumps({"bench": "edge_memory", "sessions": args.sessions, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
