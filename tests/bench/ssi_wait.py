"""What ``wait="yes"`` on SSI slot includes costs, and what it prevents.

``p13n templates compile`` writes each slot as ``include … stub=… wait="yes"``: nginx
then finishes one slot before it asks for the next, because a stub whose request
completes while an earlier one is pending is printed twice (nginx issue 426). This
runs, against one agent with ``--workers`` workers (decision.py's 20,000-item bundle),
two nginx servers in SSI mode: one in front of the pages as compiled (with ``wait``),
one in front of the same pages with ``wait`` removed. Alternating, three times each:

* wrk (32 connections): the product page reloaded by one visitor, and the product page
  for a different visitor each request;
* 300 first-time visitors' home pages: how many show a slot's fallback twice.

    python tests/bench/ssi_wait.py --work DIR [--workers 2] [--duration 8]

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

FALLBACK_RE = re.compile(r'data-variant="fallback"')


def without_wait(tpl: Path, out: Path) -> Path:
    """``tpl`` with its pages compiled for SSI and ``wait="yes"`` taken out."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(tpl, out)
    for page in (out / "pages").glob("*.html"):
        compiled = compile_template(page.read_bytes(), page.name)
        assert b' wait="yes"' in compiled
        page.write_bytes(compiled.replace(b' wait="yes"', b""))
    return out


def doubled(url: str, pages: int) -> int:
    """First-time visitors' home pages (no cookie) whose banner fallback shows twice."""
    count = 0
    for _ in range(pages):
        text = urllib.request.urlopen(urllib.request.Request(url + "/", headers={"User-Agent": et.UA})).read().decode()
        count += len(re.findall(r'<p class="banner" data-variant="fallback">', text)) > 1
    return count


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
    for stale in ("edge", "wait-sites"):
        shutil.rmtree(work / stale, ignore_errors=True)
    tpl = d.make_templates(work, 20_000)
    kept = sorted((work / "bundles").glob("bundle-v*.tar"))
    bundle, key = (kept[-1], work / "keys" / "bundle-signing.pub") if kept else d.train(work, tpl, 20_000, 300_000)
    plain_tpl = without_wait(tpl, work / "templates-no-wait")
    port = free_port()
    agent = d.start_agent(work, tpl, bundle, key, port, WORKERS=str(args.workers))
    children: list[Any] = []
    results: dict[str, dict[str, list[float]]] = {"wait": {}, "no_wait": {}}
    try:
        d.fill_sessions(f"http://127.0.0.1:{port}", args.sessions, 20_000)
        urls = {}
        for name, flags, templates in (("wait", ("--ssi",), tpl), ("no_wait", (), plain_tpl)):
            o_port, n_port = free_port(), free_port()
            site = work / "wait-sites" / name
            site.mkdir(parents=True)
            argv = p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(templates), *flags)
            children.append(spawn(f"origin-{name}", argv, site))
            wait_http(children[-1], f"http://127.0.0.1:{o_port}/healthz")
            options = NginxOptions(
                mode="ssi", agent=f"127.0.0.1:{port}", origin=f"http://127.0.0.1:{o_port}", listen=f"127.0.0.1:{n_port}"
            )
            children.append(start_nginx(site / "nginx", options))
            urls[name] = f"http://127.0.0.1:{n_port}"
        script = work / "rotate-wait.lua"
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
    print(
        json.dumps(
            {"bench": "ssi_wait", "workers": args.workers, "pages_checked_per_round": args.pages, **results},
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
