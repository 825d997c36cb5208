"""Decision benchmark: the demo product page (hero, offer, recs) with a 20k-item model.

Builds a signed bundle with ``p13n train --no-tune`` over a generated catalog of 20,000
items (64 ALS factors) and 300,000 interactions, starts an agent with it, fills 100,000
live sessions through ``/_p13n/collect``, then measures, in one run:

* through nginx in SSI mode (wrk, 32 connections), as a ratio to nginx serving the same
  page static: the product page reloaded by one visitor; the product page for a
  different visitor each request (every model call runs); the one-round-trip variant;
  a segment-only page (the home page with only its rule and segment slots, hero and offer); agent CPU
  microseconds per page (the agent's CPU time over the run); then the reload and the
  segment-only page again with the visitor's class cookie, so nginx serves the shareable
  fragments (hero, offer) from its own cache;
* each first without remembered model answers (``P13N_EDGE_MODEL_MEMO_ENTRIES=0``, as
  before they existed), then with the default;
* overload: h2load at a fixed arrival rate of twice the agent's capacity (its
  closed-loop rate on the same page): p99 page latency, the share of slots that fell
  back, non-2xx answers — with load shedding (the default) and without
  (``P13N_EDGE_SHED_LAG_MS=0``);
* in-process decision + render of one page (context, ONNX segment, rule segments, ALS
  fold-in + top-k, rendering), a visitor's first page and a reload, p50/p99;
* the agent's resident memory.

    python tests/bench/decision.py [--sessions 100000] [--duration 10] [--work DIR]

Needs nginx, wrk and h2load (Debian: nginx wrk nghttp2-client). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
#: A page whose slots depend only on rules and the segment (the home page without its
#: recommendations and its experiment: hero and offer)
SEGMENT_PAGE = "/"


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
    home = (tpl / "pages" / "home.html").read_text()
    for name in ("recs", "banner"):  # the model's slot and the experiment's: hero and offer stay
        slot = re.search(rf'<p13n-slot name="{name}".*?</p13n-slot>', home, re.DOTALL)
        assert slot is not None
        home = home.replace(slot.group(0), "")
    (tpl / "pages" / "home.html").write_text(home)
    # the hero without its hour-of-day variant: nginx does not key on the hour, so that
    # variant would keep the hero per visitor (docs/SLOTS.md, *Fragments nginx shares*)
    slots = json.loads((tpl / "slots.json").read_text())
    slots["hero"]["variants"] = [v for v in slots["hero"]["variants"] if v["id"] != "night-owl"]
    (tpl / "slots.json").write_text(json.dumps(slots))
    return tpl


def class_cookie(agent_url: str, visitor_id: str) -> str:
    """The class cookie the agent issues to ``visitor_id`` (an empty collect batch), as
    the visitor's browser would carry it after its last page's events."""
    req = urllib.request.Request(
        agent_url + "/_p13n/collect",
        data=b'{"events": []}',
        headers={"Content-Type": "application/json", "Cookie": f"p13n_id={visitor_id}"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        for header in r.headers.get_all("Set-Cookie") or []:
            header = str(header)
            if header.startswith("p13n_cls="):
                return header.split(";", 1)[0]
    raise RuntimeError("the agent issued no class cookie: does the bundle have shareable slots?")


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


def fill_sessions(agent_url: str, sessions: int, items: int, first: int = 0) -> float:
    """Three product views per visitor (``first`` … ``first + sessions - 1``), one batch
    per visitor."""
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

            await asyncio.gather(*(one(i) for i in range(first, first + sessions)))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def in_process(bundle: Path, key: Path, tpl: Path, data_dir: Path, rows: int, memo_entries: int) -> dict[str, float]:
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
        model_memo_entries=memo_entries,
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


ROTATE_LUA = """
-- each request a visitor of the filled sessions, in an order no two threads share
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
function request()
  n = n + 1
  local v = (n * 2 + (tid or 0)) % VISITORS
  wrk.headers["Cookie"] = string.format("p13n_id=benchvisitor%012d", v)
  return wrk.format(nil, nil, wrk.headers)
end
"""


def agent_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the agent and its worker processes."""
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    total = 0.0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Site:
    """The origins and nginx servers of one measurement, in front of one agent."""

    def __init__(self, work: Path, tpl: Path, agent_port: int) -> None:
        import edge_throughput as et

        from edge_agent.nginx_config import NginxOptions
        from models.slots import scan
        from p13n.procs import start_nginx

        work.mkdir(parents=True, exist_ok=True)
        self.children: list[Any] = []
        o_port, s_port, e_port = free_port(), free_port(), free_port()
        self.n_port, self.ne_port = free_port(), free_port()
        try:
            for name, port, flags in (
                ("origin", o_port, ()),
                ("origin-ssi", s_port, ("--ssi",)),
                ("origin-echo", e_port, ("--ssi", "--ssi-echo")),
            ):
                argv = p13n_command("origin", "serve", "--port", str(port), "--templates", str(tpl), *flags)
                self.children.append(spawn(name, argv, work))
                wait_http(self.children[-1], f"http://127.0.0.1:{port}/healthz")
            self.static: dict[str, str] = {}
            for page in (PAGE, SEGMENT_PAGE):
                raw = urllib.request.urlopen(f"http://127.0.0.1:{o_port}{page}").read()
                child, url = et.start_static_nginx(work / f"static{len(self.static)}", scan(raw).render({}))
                self.children.append(child)
                self.static[page] = url.replace(et.PAGE, page)
            raw = urllib.request.urlopen(f"http://127.0.0.1:{o_port}{PAGE}").read()
            agent = f"127.0.0.1:{agent_port}"
            self.children.append(
                start_nginx(
                    work / "ssi",
                    NginxOptions(mode="ssi", agent=agent, origin=f"http://127.0.0.1:{s_port}", listen=f"127.0.0.1:{self.n_port}"),
                )
            )
            self.children.append(
                start_nginx(
                    work / "ssi-echo",
                    NginxOptions(
                        mode="ssi",
                        agent=agent,
                        origin=f"http://127.0.0.1:{e_port}",
                        listen=f"127.0.0.1:{self.ne_port}",
                        echo_slots=tuple(sorted({s.name for s in scan(raw).slots})),
                    ),
                )
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


def measure(work: Path, tpl: Path, agent_pid: int, agent_port: int, duration: int, visitors: int) -> dict[str, float]:
    """wrk through nginx (SSI mode) against nginx serving the same pages static: the
    product page reloaded by one visitor, the product page of a new visitor each request
    (every model call runs), one round trip, and the segment-only page; agent CPU per page."""
    import edge_throughput as et

    site = Site(work, tpl, agent_port)
    try:
        et.COOKIE = f"p13n_id={visitor(1)}"
        et.PAGE = PAGE
        ssi = f"http://127.0.0.1:{site.n_port}"
        for url in (ssi + PAGE, f"http://127.0.0.1:{site.ne_port}{PAGE}"):
            for _ in range(100):  # a busy agent (the session flush after the fill) sheds: wait for a decided page
                body = urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": et.COOKIE})).read()
                if b"category-fan" in body:
                    break
                time.sleep(0.1)
            assert b"category-fan" in body and b"<p13n-slot" not in body and b"<!--#" not in body
        script = work / "rotate.lua"
        script.write_text(ROTATE_LUA.replace("VISITORS", str(visitors)))
        out: dict[str, float] = {}
        out["plain_rps"] = et.load(site.static[PAGE], duration, 32, 2)["rps"]
        out["plain_segment_rps"] = et.load(site.static[SEGMENT_PAGE], duration, 32, 2)["rps"]

        def run(name: str, url: str, lua: str, plain: float) -> None:
            et.run_wrk(url, 2, 32, 2, lua)  # warm-up (and the fragment cache's fill)
            cpu = agent_cpu_s(agent_pid)
            r = et.run_wrk(url, duration, 32, 2, lua)
            cpu = agent_cpu_s(agent_pid) - cpu
            out[f"{name}_rps"] = r["rps"]
            out[f"{name}_p99_ms"] = r["p99_ms"]
            out[f"{name}_ratio"] = round(r["rps"] / plain, 3)
            out[f"{name}_agent_cpu_us_per_page"] = round(cpu / (r["rps"] * duration) * 1e6, 1)
            out[f"{name}_non_2xx"] = r["non_2xx"]

        run("reload", ssi + PAGE, "", out["plain_rps"])
        run("new_visitor", ssi + PAGE, str(script), out["plain_rps"])
        run("echo", f"http://127.0.0.1:{site.ne_port}{PAGE}", "", out["plain_rps"])
        run("segment", ssi + SEGMENT_PAGE, "", out["plain_segment_rps"])
        # the same visitor's browser with its class cookie: hero and offer come from
        # nginx's fragment cache, only per-visitor slots reach the agent
        et.COOKIE = f"p13n_id={visitor(1)}; {class_cookie(f'http://127.0.0.1:{agent_port}', visitor(1))}"
        run("reload_shared", ssi + PAGE, "", out["plain_rps"])
        run("segment_shared", ssi + SEGMENT_PAGE, "", out["plain_segment_rps"])
        return out
    finally:
        site.stop()


def ceiling(work: Path, tpl: Path, agent_port: int, duration: int, plain_rps: float) -> dict[str, float]:
    """The same SSI configurations in front of an agent that does no work (the real
    agent's answers replayed by the same server code, ``zero_work_agent.py``): the most
    any agent reaches on this machine."""
    import edge_throughput as et

    from models.slots import scan

    work.mkdir(parents=True, exist_ok=True)
    et.COOKIE = f"p13n_id={visitor(1)}"
    et.PAGE = PAGE
    shell = (tpl / "pages" / "product.html").read_text()
    slots = tuple(sorted({s.name for s in scan(shell.encode()).slots}))
    capture = work / "captured.json"
    capture.write_text(json.dumps(et.capture_answers(f"127.0.0.1:{agent_port}", slots)))
    z_port = free_port()
    serve = f"from p13n.serve import run_factory; run_factory('zero_work_agent:app_from_env', '127.0.0.1', {z_port}, 'warning')"
    env = {"P13N_BENCH_CAPTURE": str(capture), "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)])}
    zero = spawn("zero-work-agent", [sys.executable, "-c", serve], work, env)
    try:
        wait_http(zero, f"http://127.0.0.1:{z_port}/_p13n/auth", ok=(204,))
        site = Site(work / "site", tpl, z_port)
        try:
            out = {}
            for name, port in (("ceiling", site.n_port), ("ceiling_echo", site.ne_port)):
                r = et.load(f"http://127.0.0.1:{port}{PAGE}", duration, 32, 2)
                out[f"{name}_rps"] = r["rps"]
                out[f"{name}_ratio"] = round(r["rps"] / plain_rps, 3)
            return out
        finally:
            site.stop()
    finally:
        zero.stop()


def agent_decisions(agent_port: int) -> dict[str, float]:
    """Decisions by outcome, summed over slots, from the agent's metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/_p13n/metrics").read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("p13n_edge_decisions_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def gc_full(agent_port: int) -> dict[str, float]:
    """The agent's full garbage collections so far: count, seconds, and how many took over
    50 ms (``p13n_edge_gc_pause_seconds{generation="2"}``)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/_p13n/metrics").read().decode()

    def sample(name: str, extra: str = "") -> float:
        found = re.search(rf'^p13n_edge_gc_pause_seconds_{name}\{{generation="2"{extra}\}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    count = sample("count")
    under_50ms = sample("bucket", ',le="0.05"')
    return {"gc_full": count, "gc_full_s": round(sample("sum"), 3), "gc_full_over_50ms": count - under_50ms}


def h2load(url: str, duration: int, clients: int, rps_per_client: float = 0.0, log: Path | None = None) -> str:
    argv = ["h2load", "--h1", "-t", "1", "-c", str(clients), "-D", str(duration), "-H", f"Cookie: p13n_id={visitor(1)}"]
    if rps_per_client:
        argv += ["--rps", f"{rps_per_client:.2f}"]
    if log is not None:
        argv += ["--log-file", str(log)]
    return subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60, check=True).stdout


def overload(work: Path, tpl: Path, agent_port: int, duration: int) -> dict[str, float]:
    """The product page at twice the capacity (h2load, fixed arrival rate): p99 page
    latency, share of slots that fell back, non-2xx. Capacity: h2load's closed-loop rate
    on the same page (32 connections)."""
    site = Site(work, tpl, agent_port)
    try:
        url = f"http://127.0.0.1:{site.n_port}{PAGE}"
        h2load(url, 2, 32)  # warm-up
        text = h2load(url, duration, 32)
        capacity = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))  # type: ignore[union-attr]
        # h2load keeps one request in flight per connection: 256 of them offer 2x the
        # capacity while pages take under 56 ms (Little's law), which a queueing agent
        # cannot hold; more connections only move the queue into nginx on this machine
        clients = 256
        before = agent_decisions(agent_port)
        log = work / "h2load.log"
        text = h2load(url, duration, clients, 2 * capacity / clients, log)
        after = agent_decisions(agent_port)
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
        latencies = sorted(int(r[2]) / 1000 for r in rows)
        statuses = [int(r[1]) for r in rows]
        decided = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        slots = sum(decided.values())
        return {
            "capacity_rps": capacity,
            "offered_rps": round(2 * capacity, 1),
            "served_rps": round(len(rows) / duration, 1),
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
            "overload_share": round(decided.get("overload", 0.0) / slots, 3) if slots else 0.0,
            "non_2xx": sum(1 for s in statuses if not 200 <= s < 300),
            "requests": len(rows),
        }
    finally:
        site.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_agent(work: Path, tpl: Path, bundle: Path, key: Path, port: int, **env: str) -> Any:
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
            "P13N_EDGE_WORKERS": "1",  # one worker, as the figures before workers were measured (tests/bench/workers.py: more)
            **{f"P13N_EDGE_{k}": v for k, v in env.items()},
        },
    )
    wait_http(agent, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=60)
    return agent


def agent_rss_mb(pid: int) -> float:
    pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    return max([rss_mb(p) for p in pids] + [rss_mb(pid)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=300_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--work", default="", help="keep the work directory here and reuse its bundle on the next run")
    args = ap.parse_args()
    for tool in ("wrk", "h2load", "nginx"):
        if shutil.which(tool) is None and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            print(f"{tool} is needed (apt-get install wrk nghttp2-client nginx)", file=sys.stderr)
            return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="p13n-decision-"))
    figures: dict[str, Any] = {}
    try:
        for stale in ("edge", "sites"):  # a kept work directory: only the bundle is reused
            shutil.rmtree(work / stale, ignore_errors=True)
        tpl = make_templates(work, args.items)
        t = time.perf_counter()
        kept = sorted((work / "bundles").glob("bundle-v*.tar")) if args.work else []
        bundle, key = (
            (kept[-1], work / "keys" / "bundle-signing.pub") if kept else train(work, tpl, args.items, args.interactions)
        )
        print(f"bundle {bundle.name} ({bundle.stat().st_size} bytes) in {time.perf_counter() - t:.1f} s", flush=True)
        port = free_port()
        sites = iter(range(100))

        def site_dir() -> Path:
            return work / "sites" / str(next(sites))

        # 1. no remembered answers (as before this change), shedding on: fill, then the pages
        agent = start_agent(work, tpl, bundle, key, port, MODEL_MEMO_ENTRIES="0")
        try:
            fill_s = fill_sessions(f"http://127.0.0.1:{port}", args.sessions, args.items)
            time.sleep(2.0)  # one flush of the session write-behind
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz").read())
            print(f"{args.sessions} sessions filled in {fill_s:.1f} s", flush=True)
            figures["no_memo"] = measure(site_dir(), tpl, agent.proc.pid, port, args.duration, args.sessions)
            figures["no_memo"]["agent_rss_mb"] = round(agent_rss_mb(agent.proc.pid), 1)
            figures["no_memo"].update(gc_full(port))
            print("without remembered answers:", json.dumps(figures["no_memo"]), flush=True)
            figures["overload_shedding"] = overload(site_dir(), tpl, port, args.duration)
            print("2x capacity, shedding:", json.dumps(figures["overload_shedding"]), flush=True)
        finally:
            agent.stop()
        # 2. the same at twice the capacity with shedding off (before this change)
        agent = start_agent(work, tpl, bundle, key, port, MODEL_MEMO_ENTRIES="0", SHED_LAG_MS="0")
        try:
            figures["overload_queueing"] = overload(site_dir(), tpl, port, args.duration)
            print("2x capacity, no shedding:", json.dumps(figures["overload_queueing"]), flush=True)
        finally:
            agent.stop()
        # 3. the defaults: remembered answers, shedding
        agent = start_agent(work, tpl, bundle, key, port)
        try:
            figures["memo"] = measure(site_dir(), tpl, agent.proc.pid, port, args.duration, args.sessions)
            figures["memo"]["agent_rss_mb"] = round(agent_rss_mb(agent.proc.pid), 1)
            figures["memo"].update(gc_full(port))
            print("with remembered answers:", json.dumps(figures["memo"]), flush=True)
            figures["ceiling"] = ceiling(site_dir(), tpl, port, args.duration, figures["memo"]["plain_rps"])
            m, c = figures["memo"], figures["ceiling"]
            figures["ceiling"]["reload_share_of_ceiling"] = round(m["reload_rps"] / c["ceiling_rps"], 3)
            figures["ceiling"]["echo_share_of_ceiling"] = round(m["echo_rps"] / c["ceiling_echo_rps"], 3)
            print("zero-work agent (the ceiling):", json.dumps(figures["ceiling"]), flush=True)
        finally:
            agent.stop()
        for memo in (0, 10_000):
            timing = in_process(bundle, key, tpl, work / "edge", args.rows, memo)
            figures[f"in_process_memo_{memo}"] = timing
            print(f"in-process decision + render (memo {memo}):", json.dumps(timing), flush=True)
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
                **figures,
                "outbox_after_fill": health["outbox_depth"],
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
