"""The learning loop, measured: does the product learn from its own traffic?

Runs the whole product as ``p13n demo`` does (nats-server, hub, demo origin, edge agent,
nginx in SSI mode) with scheduled training off, and a simulated population over real
HTTP through nginx. Each visitor has a taste (one of four planted groups of the demo catalog), accepts
the consent banner (``POST /_p13n/consent``, as the SDK does) and browses in a session:
on every page the ``recs`` slot shows four items; the visitor clicks each recommended
item of their taste with probability ``--p-taste`` and each other one with
``--p-other`` (the click-through rate is clicks per item shown), goes on to the first
item clicked, or else opens another product (of their taste with probability
``--browse-taste``, else any: the site's own navigation); on every product page they add
it to the cart with probability ``--p-cart`` when it is of their taste (``--p-cart-other``
otherwise). Page views, clicks and add-to-carts are sent to ``/_p13n/collect`` as the SDK
sends them.

The site runs a **personalization holdout** (``--holdout`` of visitors, the demo's
templates plus ``holdout.json``): they see the page's own fallback (no recommendations).
A visitor converts when they add anything to the cart; each phase prints the conversion
of the personalized visitors and of the holdout, their ratio and a two-proportion
z-test (normal approximation, two-sided).

Phase 1 runs on the initial bundle (trained on generated tastes, as the demo ships).
Then the hub trains on what it collected (``POST /v1/training/runs``) and pushes; phase 2
runs on the new bundle with new visitors and returning ones. Printed: the click-through
rate of the ``recs`` slot in each phase and their ratio, the time from the last event of
phase 1 to the new bundle live on the edge, and the run's own timings.

    python tests/bench/loop.py [--visitors 1500] [--phase2 1000] [--pages 6] [--holdout 0.2] [--concurrency 24]

Everything listens on 127.0.0.1; every phase is bounded in visitors and time.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from models.experiments import GlobalHoldout  # noqa: E402
from p13n.procs import DEFAULT_TEMPLATES, free_port  # noqa: E402

READY = re.compile(r"^p13n demo ready: site=(http://127\.0\.0\.1:\d+)/ hub=(http://127\.0\.0\.1:\d+)/$")
RECS = re.compile(r'data-slot="recs".*?</ul>', re.S)
ITEM = re.compile(r'data-p13n-item="([^"]+)"')


@dataclass
class Tally:
    impressions: int = 0
    clicks: int = 0
    events: int = 0
    pages: int = 0
    errors: int = 0
    last_event: float = 0.0
    per_visitor: dict[str, int] = field(default_factory=dict)
    #: arm ("personalized", "holdout") → [visitors, visitors who added to the cart]
    arms: dict[str, list[int]] = field(default_factory=lambda: {"personalized": [0, 0], "holdout": [0, 0]})

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    def conversion(self) -> dict[str, Any]:
        """Per arm: visitors, conversion; the ratio and a two-proportion z-test."""
        (n1, c1), (n0, c0) = self.arms["personalized"], self.arms["holdout"]
        p1, p0 = (c1 / n1 if n1 else 0.0), (c0 / n0 if n0 else 0.0)
        pooled = (c1 + c0) / (n1 + n0) if n1 + n0 else 0.0
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0)) if n1 and n0 and 0 < pooled < 1 else 0.0
        z = (p1 - p0) / se if se else 0.0
        return {
            "personalized": {"visitors": n1, "conversion": round(p1, 4)},
            "holdout": {"visitors": n0, "conversion": round(p0, 4)},
            "ratio": round(p1 / p0, 2) if p0 else None,
            "z": round(z, 2),
            "p_value": round(math.erfc(abs(z) / math.sqrt(2)), 6),
        }


CATALOG = [item["id"] for item in json.loads((DEFAULT_TEMPLATES / "catalog.json").read_text())]
#: The seed of the personalization holdout the bench's site runs (share: --holdout).
HOLDOUT_SEED = "loop-bench-holdout"


def tastes(groups: int = 4, seed: int = 11) -> list[list[str]]:
    """Planted taste groups: a seeded partition of the demo catalog that cuts across its
    categories (the recs slot shows at most two items per category, a diversity rule a
    category-shaped taste would run into), unknown to the bundle the demo starts with."""
    ids = [item["id"] for item in json.loads((DEFAULT_TEMPLATES / "catalog.json").read_text())]
    random.Random(seed).shuffle(ids)
    return [sorted(ids[g::groups]) for g in range(groups)]


async def send(http: aiohttp.ClientSession, site: str, events: list[dict[str, Any]], tally: Tally) -> None:
    async with http.post(site + "/_p13n/collect", json=events, headers={"origin": site}) as r:
        if r.status >= 400:
            tally.errors += 1
        await r.read()
    tally.events += len(events)
    tally.last_event = time.monotonic()


def event(kind: str, site: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": kind, "ts": int(time.time() * 1000), "url": site + path, **extra}


async def visit(site: str, taste: list[str], args: argparse.Namespace, rnd: random.Random, tally: Tally, jar: Any) -> Any:
    """One session; returns the cookie jar (a returning visitor keeps it)."""
    jar = jar or aiohttp.CookieJar(unsafe=True)
    carts = 0
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as http:
        path = "/"
        async with http.post(
            site + "/_p13n/consent",
            json={"categories": ["analytics", "personalization"], "source": "banner"},
            headers={"origin": site},
        ) as r:
            await r.read()
        visitor = next((c.value for c in jar if c.key == "p13n_id"), "")
        arm = "holdout" if GlobalHoldout(args.holdout, HOLDOUT_SEED).holds(visitor) else "personalized"
        for _ in range(args.pages):
            async with http.get(site + path) as r:
                html = await r.text()
                if r.status != 200:
                    tally.errors += 1
                    return jar
            tally.pages += 1
            await send(http, site, [event("page_view", site, path)], tally)
            if path.startswith("/p/"):
                item = path[3:]
                if rnd.random() < (args.p_cart if item in taste else args.p_cart_other):
                    carts += 1
                    await send(http, site, [event("add_to_cart", site, path, item_id=item)], tally)
            block = RECS.search(html)
            shown = ITEM.findall(block.group(0)) if block else []
            tally.impressions += len(shown)
            # each shown item is clicked on its own (a click per item impression, opened
            # in a tab of its own); the session goes on at the first one clicked
            clicked = [i for i in shown if rnd.random() < (args.p_taste if i in taste else args.p_other)]
            if clicked:
                tally.clicks += len(clicked)
                await send(http, site, [event("click", site, path, item_id=i) for i in clicked], tally)
                path = f"/p/{clicked[0]}"
            else:
                path = f"/p/{rnd.choice(taste if rnd.random() < args.browse_taste else CATALOG)}"
    tally.arms[arm][0] += 1
    tally.arms[arm][1] += carts > 0
    return jar


async def phase(
    site: str, visitors: list[tuple[list[str], Any]], args: argparse.Namespace, seed: int
) -> tuple[Tally, list[tuple[list[str], Any]]]:
    tally = Tally()
    rnd = random.Random(seed)
    gate = asyncio.Semaphore(args.concurrency)
    deadline = time.monotonic() + args.phase_timeout_s
    out: list[tuple[list[str], Any]] = []

    async def one(taste: list[str], jar: Any) -> None:
        async with gate:
            if time.monotonic() > deadline:
                return
            out.append((taste, await visit(site, taste, args, rnd, tally, jar)))

    await asyncio.gather(*(one(t, j) for t, j in visitors))
    return tally, out


def http_json(url: str, token: str, method: str = "GET", body: bytes | None = None) -> Any:
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait(predicate: Any, timeout_s: float, step: float = 0.1) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError("condition not met in time")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visitors", type=int, default=1500, help="phase 1 visitors")
    ap.add_argument("--phase2", type=int, default=1000, help="phase 2 visitors (half new, half returning)")
    ap.add_argument("--pages", type=int, default=6, help="pages per session")
    ap.add_argument("--p-taste", type=float, default=0.35, help="click probability of a shown item in the visitor's taste")
    ap.add_argument("--p-other", type=float, default=0.02, help="click probability of a shown item outside it")
    ap.add_argument("--browse-taste", type=float, default=0.5, help="without a click, the next product is of the visitor's taste")
    ap.add_argument("--p-cart", type=float, default=0.15, help="add-to-cart probability on a product of the visitor's taste")
    ap.add_argument("--p-cart-other", type=float, default=0.01, help="add-to-cart probability on another product")
    ap.add_argument("--holdout", type=float, default=0.2, help="share of visitors in the personalization holdout")
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--phase-timeout-s", type=float, default=300.0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="p13n-loop-"))
    templates = work / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    (templates / "holdout.json").write_text(json.dumps({"share": args.holdout, "seed": HOLDOUT_SEED}))
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "p13n", "demo", "--port", str(port), "--data-dir", str(work / "demo"), "--mode", "ssi",
         "--training-interval-s", "86400", "--templates", str(templates)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ},
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        ready, _, _ = select.select([demo.stdout], [], [], 180)
        line = demo.stdout.readline().strip() if ready else ""
        m = READY.match(line)
        if not m:
            raise SystemExit(f"demo did not start: {line!r}")
        site, hub = m.group(1), m.group(2)
        token = (work / "demo" / "admin.token").read_text().strip()
        groups = tastes()
        rnd = random.Random(7)
        population: list[tuple[list[str], Any]] = [(groups[n % len(groups)], None) for n in range(args.visitors)]

        t1 = time.monotonic()
        before, seen = asyncio.run(phase(site, population, args, seed=1))
        phase1_s = time.monotonic() - t1

        def accepted() -> int:
            return int(http_json(hub + "/v1/stats", token)["accepted"])

        wait(lambda: accepted() >= before.events * 0.99, 120, 0.5)

        def live() -> dict[str, Any]:
            edges = http_json(hub + "/v1/edges", token)["edges"]
            return dict(next(e for e in edges if e["edge_id"] == "demo-edge"))

        version_before = live()["model_version"]
        run = http_json(hub + "/v1/training/runs", token, "POST", b"")["run"]
        record: dict[str, Any] = {}

        def run_done() -> bool:
            nonlocal record
            record = http_json(hub + f"/v1/training/runs/{run['id']}", token)
            return bool(record["status"] != "running")

        wait(run_done, 600, 0.5)
        if record["status"] not in ("passed", "forced"):
            raise SystemExit(f"the training run did not ship: {record['status']}: {record['reason']}")
        wait(lambda: live()["model_version"] == record["version"], 120, 0.1)
        to_live_s = time.monotonic() - before.last_event

        returning = rnd.sample(seen, min(len(seen), args.phase2 // 2))
        fresh = [(groups[n % len(groups)], None) for n in range(args.phase2 - len(returning))]
        after, _ = asyncio.run(phase(site, [*returning, *fresh], args, seed=2))
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "visitors": {"phase1": args.visitors, "phase2": len(returning) + len(fresh), "returning": len(returning)},
            "pages_per_visit": args.pages,
            "events": {"phase1": before.events, "phase2": after.events},
            "http_errors": before.errors + after.errors,
            "ctr_before": round(before.ctr, 4),
            "ctr_after": round(after.ctr, 4),
            "ctr_ratio": round(after.ctr / before.ctr, 2) if before.ctr else None,
            "holdout_share": args.holdout,
            "conversion_phase1": before.conversion(),
            "conversion_phase2": after.conversion(),
            "bundle": {"before": version_before, "after": record["version"]},
            "gate": record["gate"],
            "run_timings_s": record["timings"],
            "training_subjects": record["summary"]["subjects"],
            "last_event_to_live_s": round(to_live_s, 1),
            "phase1_s": round(phase1_s, 1),
        }
        print(f"CTR of the recs slot: {before.ctr:.2%} on the generated bundle, {after.ctr:.2%} after learning "
              f"({result['ctr_ratio']}×); last event → new bundle live {to_live_s:.1f} s")  # fmt: skip
        conv = result["conversion_phase2"]
        print(f"phase 2 conversion: personalized {conv['personalized']['conversion']:.2%} "
              f"(n={conv['personalized']['visitors']}), holdout {conv['holdout']['conversion']:.2%} "
              f"(n={conv['holdout']['visitors']}), ratio {conv['ratio']}, p={conv['p_value']}")  # fmt: skip
        print(json.dumps(result))
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    main()
