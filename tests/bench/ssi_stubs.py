"""Slot fallbacks in SSI mode: answered by the agent, nginx's stub, or ``wait="yes"``.

nginx prints an include's stub twice when its request completes while an earlier
include of the page is still pending (nginx issue 426), which happens once several
workers answer a page's slots out of order. Three ways to compile the same pages:

* ``served`` (what ``p13n templates compile`` writes): each include names its fallback
  (``fb=…``) and the agent answers a decided fallback's HTML itself, 200;
* ``stub``: the same includes without ``fb``: the agent answers 204 and nginx prints
  the stub (as before the change);
* ``wait``: ``stub`` plus ``wait="yes"``: nginx finishes each slot before the next.

Against one agent with ``--workers`` workers (decision.py's 20,000-item bundle), three
nginx servers in SSI mode in front of the three, alternating, ``--rounds`` times:
wrk (32 connections) on the product page reloaded by one visitor and for a different
visitor each request; and ``--pages`` first-time visitors' home pages, counting those
that show a slot's fallback twice. Then the same count with the stock templates in front
of an agent without a model (its slots answer in microseconds and overtake each other).

    python tests/bench/ssi_stubs.py --work DIR [--workers 2] [--duration 8]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import decision as d
import edge_throughput as et

from edge_agent.nginx_config import NginxOptions
from edge_agent.ssi_compile import compile_template
from p13n.procs import free_port, p13n_command, spawn, start_nginx, wait_http


def compiled_as(tpl: Path, out: Path, variant: str) -> Path:
    """``tpl`` with its pages compiled for SSI, then changed into ``variant``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(tpl, out)
    for page in (out / "pages").glob("*.html"):
        compiled = compile_template(page.read_bytes(), page.name)
        assert b"&fb=" in compiled
        stubbed = re.sub(rb"&fb=[0-9a-f]+", b"", compiled)
        waiting = re.sub(rb'(<!--# include [^>]*?stub="[^"]+") -->', rb'\1 wait="yes" -->', stubbed)
        page.write_bytes(stubbed if variant == "stub" else waiting)
    return out


def doubled(url: str, pages: int) -> int:
    """First-time visitors' home pages (no cookie) whose banner fallback shows twice."""
    count = 0
    for _ in range(pages):
        text = urllib.request.urlopen(urllib.request.Request(url + "/", headers={"User-Agent": et.UA})).read().decode()
        count += len(re.findall(r'<p class="banner" data-variant="fallback">', text)) > 1
    return count


def stock_doubles(work: Path, workers: int, rounds: int, pages: int) -> dict[str, list[int]]:
    """The same three compiles of the stock templates in front of an agent without a
    model (slots decide in microseconds, so their answers overtake each other most):
    first-time home pages with a doubled fallback, per round, one nginx worker."""
    from p13n.procs import DEFAULT_TEMPLATES

    site = work / "stub-sites" / "stock"
    variants = {
        "served": DEFAULT_TEMPLATES,
        "stub": compiled_as(DEFAULT_TEMPLATES, site / "templates-stub", "stub"),
        "wait": compiled_as(DEFAULT_TEMPLATES, site / "templates-wait", "wait"),
    }
    port = free_port()
    env = {
        "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
        "P13N_EDGE_ORIGIN": "http://127.0.0.1:9",
        "P13N_EDGE_DATA_DIR": str(site / "edge"),
        "P13N_ALLOW_DEV_KEYS": "1",
        "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
        "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
        "P13N_EDGE_NATS_URL": "nats://127.0.0.1:9",
        "P13N_EDGE_SHED_LAG_MS": "0",
        "P13N_EDGE_WORKERS": str(workers),
    }
    children: list[Any] = [spawn("edge-stock", p13n_command("edge", "serve"), site, env)]
    out: dict[str, list[int]] = {name: [] for name in variants}
    try:
        wait_http(children[0], f"http://127.0.0.1:{port}/_p13n/healthz")
        urls = {}
        for name, templates in variants.items():
            o_port, n_port = free_port(), free_port()
            flags: tuple[str, ...] = ("--ssi",) if name == "served" else ()
            argv = p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(templates), *flags)
            children.append(spawn(f"origin-stock-{name}", argv, site))
            wait_http(children[-1], f"http://127.0.0.1:{o_port}/healthz")
            options = NginxOptions(
                mode="ssi", agent=f"127.0.0.1:{port}", origin=f"http://127.0.0.1:{o_port}", listen=f"127.0.0.1:{n_port}"
            )
            children.append(start_nginx(site / f"nginx-{name}", options, worker_processes="1"))
            urls[name] = f"http://127.0.0.1:{n_port}"
        for _ in range(rounds):
            for name, url in urls.items():
                out[name].append(doubled(url, pages))
    finally:
        for child in reversed(children):
            child.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="decision.py's work directory (its bundle is reused or trained)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pages", type=int, default=300)
    args = ap.parse_args()
    work = Path(args.work)
    for stale in ("edge", "stub-sites"):
        shutil.rmtree(work / stale, ignore_errors=True)
    tpl = d.make_templates(work, 20_000)
    kept = sorted((work / "bundles").glob("bundle-v*.tar"))
    bundle, key = (kept[-1], work / "keys" / "bundle-signing.pub") if kept else d.train(work, tpl, 20_000, 300_000)
    variants = {
        "served": tpl,
        "stub": compiled_as(tpl, work / "templates-stub", "stub"),
        "wait": compiled_as(tpl, work / "templates-wait", "wait"),
    }
    port = free_port()
    agent = d.start_agent(work, tpl, bundle, key, port, WORKERS=str(args.workers))
    children: list[Any] = []
    results: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    try:
        d.fill_sessions(f"http://127.0.0.1:{port}", args.sessions, 20_000)
        urls = {}
        for name, templates in variants.items():
            flags: tuple[str, ...] = ("--ssi",) if name == "served" else ()  # the others are compiled already
            o_port, n_port = free_port(), free_port()
            site = work / "stub-sites" / name
            site.mkdir(parents=True)
            argv = p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(templates), *flags)
            children.append(spawn(f"origin-{name}", argv, site))
            wait_http(children[-1], f"http://127.0.0.1:{o_port}/healthz")
            options = NginxOptions(
                mode="ssi", agent=f"127.0.0.1:{port}", origin=f"http://127.0.0.1:{o_port}", listen=f"127.0.0.1:{n_port}"
            )
            children.append(start_nginx(site / "nginx", options))
            urls[name] = f"http://127.0.0.1:{n_port}"
        script = work / "rotate-stubs.lua"
        script.write_text(d.ROTATE_LUA.replace("VISITORS", str(args.sessions)))
        et.COOKIE = f"p13n_id={d.visitor(1)}"
        for _ in range(args.rounds):
            for name, url in urls.items():
                r = results[name]
                et.run_wrk(url + d.PAGE, 2, 32, 2)  # warm-up
                reload = et.run_wrk(url + d.PAGE, args.duration, 32, 2)
                fresh = et.run_wrk(url + d.PAGE, args.duration, 32, 2, str(script))
                r.setdefault("reload_rps", []).append(reload["rps"])
                r.setdefault("reload_p50_ms", []).append(reload["p50_ms"])
                r.setdefault("reload_p99_ms", []).append(reload["p99_ms"])
                r.setdefault("new_visitor_rps", []).append(fresh["rps"])
                r.setdefault("new_visitor_p99_ms", []).append(fresh["p99_ms"])
                r.setdefault("doubled_fallbacks", []).append(doubled(url, args.pages))
                print(name, {k: v[-1] for k, v in r.items()}, flush=True)
    finally:
        for child in reversed(children):
            child.stop()
        agent.stop()
    stock = stock_doubles(work, args.workers, args.rounds, args.pages)
    print("stock templates, no model: doubled fallbacks", json.dumps(stock), flush=True)
    print(
        json.dumps(
            {
                "bench": "ssi_stubs",
                "workers": args.workers,
                "pages_checked_per_round": args.pages,
                **results,
                "stock_doubled_fallbacks": stock,
            },
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
