"""Decision benchmark: the demo product page (hero, offer, recs) with a 20k-item model.

Builds a signed bundle with ``p13n train --no-tune`` over a generated catalog of 20,000
items (64 ALS factors) and 300,000 interactions, starts an agent with it, fills 100,000
live sessions through ``/_p13n/collect``, then measures:

* in-process decision + render of one page for returning visitors with sessions
  (context, ONNX segment, rule segments, ALS fold-in + top-k, rendering), p50/p99;
* through nginx in SSI mode (an include per slot, and the one-round-trip variant),
  personalized page req/s as a ratio to nginx serving the same page unpersonalized
  (wrk, 32 connections);
* the agent's resident memory.

    python tests/bench/decision.py [--sessions 100000] [--duration 10]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

from models.data import write_interactions  # noqa: E402
from models.synthetic import taste_groups  # noqa: E402
from p13n.procs import DEFAULT_TEMPLATES, free_port, p13n_command, spawn, wait_http  # noqa: E402

CATEGORIES = ("accessories", "dresses", "jackets", "shoes")
PAGE = "/p/i5"


def make_templates(work: Path, items: int) -> Path:
    tpl = work / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, tpl, dirs_exist_ok=True)
    per = items // len(CATEGORIES)
    catalog = [
        {
            "id": f"i{j}",
            "title": f"Item {j}",
            "category": CATEGORIES[min(j // per, 3)],
            "price": 10 + j % 90,
            "currency": "EUR",
            "url": f"/p/i{j}",
            "color": "#777",
            "description": f"{CATEGORIES[min(j // per, 3)]} number {j}",
            "tags": [],
            "popularity": items - j,
        }
        for j in range(items)
    ]
    (tpl / "catalog.json").write_text(json.dumps(catalog))
    return tpl


def train(work: Path, tpl: Path, items: int, interactions: int) -> tuple[Path, Path]:
    """Generate interactions and keys (first call only), then train one more bundle version."""
    if not (work / "interactions.csv").exists():
        data = taste_groups(50_000, items, interactions, groups=len(CATEGORIES), seed=1, item_ids=[f"i{j}" for j in range(items)])
        write_interactions(work / "interactions.csv", data)
    if not (work / "keys" / "bundle-signing.key").exists():
        subprocess.run([sys.executable, "-m", "p13n", "keys", "generate", str(work / "keys")], check=True, capture_output=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "p13n",
            "train",
            "--no-tune",
            "--interactions",
            str(work / "interactions.csv"),
            "--templates",
            str(tpl),
            "--key",
            str(work / "keys" / "bundle-signing.key"),
            "--out",
            str(work / "bundles"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(out.stdout)["bundle"]), work / "keys" / "bundle-signing.pub"


def visitor(i: int) -> str:
    return f"benchvisitor{i:012d}"


def fill_sessions(agent_url: str, sessions: int, items: int) -> float:
    """Three product views per visitor, ten visitors per request (cookie per request)."""
    import aiohttp

    rng = np.random.default_rng(7)

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                cat = rng.integers(0, 4)
                views = [
                    {"type": "page_view", "url": f"https://s/p/i{int(cat * items // 4 + rng.integers(0, items // 4))}"}
                    for _ in range(3)
                ]
                async with (
                    sem,
                    http.post(
                        agent_url + "/_p13n/collect", json={"events": views}, headers={"Cookie": f"p13n_id={visitor(i)}"}
                    ) as r,
                ):
                    assert r.status == 202, await r.text()

            await asyncio.gather(*(one(i) for i in range(sessions)))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def in_process(bundle: Path, key: Path, tpl: Path, data_dir: Path, rows: int) -> dict[str, float]:
    """Context + decisions + render of the product page, as the filter path does it."""
    from edge_agent.app import create_app
    from edge_agent.pages import decide_slots
    from edge_agent.rewrite import prepare, render
    from edge_agent.settings import EdgeSettings
    from p13n.origin import create_origin

    settings = EdgeSettings(
        data_dir=data_dir,
        templates_dir=tpl,
        model_bundle=str(bundle),
        bundle_public_key=str(key),
        nats_url="nats://127.0.0.1:9",
        default_consent=("necessary", "analytics", "personalization"),
    )
    app = create_app(settings)
    from starlette.testclient import TestClient

    shell = TestClient(create_origin(tpl, False)).get(PAGE).content
    page = prepare(shell, "text/html; charset=utf-8")
    slots = [(s.name, s.attrs) for s in page.template.slots]
    with TestClient(app) as client:
        client.get("/_p13n/healthz")
        state = app.state.edge
        sources: dict[str, int] = {}

        def pages(first: int) -> list[float]:
            times = []
            for r in range(first, first + rows):
                headers = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64)", "cookie": f"p13n_id={visitor(r)}"}
                t = time.perf_counter()
                ctx = state.page_context(headers, PAGE)
                decision = decide_slots(ctx, state.bundle, slots, 50.0, state.models)
                render(page, decision.fills())
                times.append(time.perf_counter() - t)
                src = decision.outcomes["recs"].detail
                sources[src] = sources.get(src, 0) + 1
            return times

        pages(rows)  # warm-up on other visitors
        first = statistics.quantiles(pages(0), n=100)  # each visitor's first page: every model call runs
        again = statistics.quantiles(pages(0), n=100)  # the same pages reloaded: remembered answers
        exactness = topk_exactness(state.models)
    return {
        "topk_same_as_exact": exactness,
        "decision_p50_ms": round(first[49] * 1000, 3),
        "decision_p99_ms": round(first[98] * 1000, 3),
        "reload_p50_ms": round(again[49] * 1000, 3),
        "reload_p99_ms": round(again[98] * 1000, 3),
        "recs_from_als_share": round(sources.get("als", 0) / (3 * rows), 3),
    }


def topk_exactness(models: Any, users: int = 1000) -> float:
    """Share of fold-in visitors whose ONNX top-50 (int8 stage + exact re-score) is the
    exact float top-50 of numpy, item for item (exclusions included)."""
    from models.als import fold_in_low_rank, top_k

    rng = np.random.default_rng(7)
    y = models.item_factors
    same = tried = 0
    while tried < users:
        items = rng.integers(0, len(y), size=int(rng.integers(1, 8)))
        user = fold_in_low_rank(y, models.gram_inv, items, np.ones(len(items)), models.alpha)
        if not user.any():  # items without factors: every order is a tie
            continue
        tried += 1
        idx, _ = models.als.top(user, items[:1])
        same += list(idx) == list(top_k(y @ user, len(idx), items[:1]))
    return round(same / users, 4)


def ssi_ratio(work: Path, tpl: Path, agent_port: int, duration: int) -> dict[str, float]:
    """wrk on nginx (SSI mode, personalized, a visitor with a session) vs nginx static."""
    import edge_throughput as et

    from edge_agent.nginx_config import NginxOptions
    from models.slots import scan
    from p13n.procs import start_nginx

    children = []
    try:
        o_port, s_port, n_port, e_port, ne_port = free_port(), free_port(), free_port(), free_port(), free_port()
        children.append(spawn("origin", p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(tpl)), work))
        children.append(
            spawn("origin-ssi", p13n_command("origin", "serve", "--port", str(s_port), "--templates", str(tpl), "--ssi"), work)
        )
        children.append(
            spawn(
                "origin-echo",
                p13n_command("origin", "serve", "--port", str(e_port), "--templates", str(tpl), "--ssi", "--ssi-echo"),
                work,
            )
        )
        wait_http(children[0], f"http://127.0.0.1:{o_port}/healthz")
        wait_http(children[1], f"http://127.0.0.1:{s_port}/healthz")
        wait_http(children[2], f"http://127.0.0.1:{e_port}/healthz")
        raw = urllib.request.urlopen(f"http://127.0.0.1:{o_port}{PAGE}").read()
        static, static_url = et.start_static_nginx(work / "static", scan(raw).render({}))
        children.append(static)
        children.append(
            start_nginx(
                work / "ssi",
                NginxOptions(
                    mode="ssi", agent=f"127.0.0.1:{agent_port}", origin=f"http://127.0.0.1:{s_port}", listen=f"127.0.0.1:{n_port}"
                ),
            )
        )
        children.append(
            start_nginx(
                work / "ssi-echo",
                NginxOptions(
                    mode="ssi",
                    agent=f"127.0.0.1:{agent_port}",
                    origin=f"http://127.0.0.1:{e_port}",
                    listen=f"127.0.0.1:{ne_port}",
                    echo_slots=tuple(sorted({s.name for s in scan(raw).slots})),
                ),
            )
        )
        et.COOKIE = f"p13n_id={visitor(1)}"
        et.PAGE = PAGE
        for port in (n_port, ne_port):
            body = urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}{PAGE}", headers={"Cookie": et.COOKIE})
            ).read()
            assert b"category-fan" in body and b"<p13n-slot" not in body and b"<!--#" not in body
        plain = et.load(static_url.replace("/p/dr01", PAGE), duration, 32, 2)
        ssi = et.load(f"http://127.0.0.1:{n_port}{PAGE}", duration, 32, 2)
        echo = et.load(f"http://127.0.0.1:{ne_port}{PAGE}", duration, 32, 2)
        return {
            "plain_rps": plain["rps"],
            "ssi_rps": ssi["rps"],
            "ssi_p99_ms": ssi["p99_ms"],
            "ssi_ratio": round(ssi["rps"] / plain["rps"], 3),
            "ssi_echo_rps": echo["rps"],
            "ssi_echo_p99_ms": echo["p99_ms"],
            "ssi_echo_ratio": round(echo["rps"] / plain["rps"], 3),
        }
    finally:
        for child in reversed(children):
            child.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=300_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--work", default="", help="keep the work directory here and reuse its bundle on the next run")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="p13n-decision-"))
    try:
        for stale in ("edge", "static", "ssi", "ssi-echo"):  # a kept work directory: only the bundle is reused
            shutil.rmtree(work / stale, ignore_errors=True)
        tpl = make_templates(work, args.items)
        t = time.perf_counter()
        kept = sorted((work / "bundles").glob("bundle-v*.tar")) if args.work else []
        bundle, key = (kept[-1], work / "keys" / "bundle-signing.pub") if kept else train(work, tpl, args.items, args.interactions)
        print(f"bundle {bundle.name} ({bundle.stat().st_size} bytes) in {time.perf_counter() - t:.1f} s", flush=True)
        port = free_port()
        agent = spawn(
            "edge",
            p13n_command("edge", "serve"),
            work,
            {
                "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
                "P13N_EDGE_DATA_DIR": str(work / "edge"),
                "P13N_ALLOW_DEV_KEYS": "1",
                "P13N_EDGE_TEMPLATES_DIR": str(tpl),
                "P13N_EDGE_MODEL_BUNDLE": str(bundle),
                "P13N_EDGE_BUNDLE_PUBLIC_KEY": str(key),
                "P13N_EDGE_NATS_URL": "nats://127.0.0.1:9",
                "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
                "P13N_EDGE_OUTBOX_MAX_EVENTS": "10000000",
            },
        )
        try:
            wait_http(agent, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=60)
            fill_s = fill_sessions(f"http://127.0.0.1:{port}", args.sessions, args.items)
            time.sleep(2.0)  # one flush of the session write-behind
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz").read())
            ssi = ssi_ratio(work, tpl, port, args.duration)
            print(
                f"SSI personalized {ssi['ssi_rps']:.0f} req/s (one round trip {ssi['ssi_echo_rps']:.0f}) "
                f"vs plain nginx {ssi['plain_rps']:.0f} req/s = {ssi['ssi_ratio']} ({ssi['ssi_echo_ratio']})",
                flush=True,
            )
            pids = [
                int(p)
                for p in subprocess.run(["pgrep", "-P", str(agent.proc.pid)], capture_output=True, text=True).stdout.split()
            ]
            agent_rss = max([rss_mb(p) for p in pids] + [rss_mb(agent.proc.pid)])
            print(f"{args.sessions} sessions filled in {fill_s:.1f} s; agent RSS {agent_rss:.0f} MB", flush=True)
        finally:
            agent.stop()
        timing = in_process(bundle, key, tpl, work / "edge", args.rows)
        print(f"in-process decision + render: p50 {timing['decision_p50_ms']} ms, p99 {timing['decision_p99_ms']} ms", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "decision",
                "items": args.items,
                "factors": 64,
                "sessions": args.sessions,
                **timing,
                **ssi,
                "agent_rss_mb": round(agent_rss, 1),
                "outbox_after_fill": health["outbox_depth"],
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
