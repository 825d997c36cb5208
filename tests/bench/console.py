"""Console page times and weights with a warehouse of 1M events.

Builds a hub data directory (``--events`` page views over 30 days in the warehouse and
the lake, 20,000 dead letters, an experiment of ``--exposed`` visitors with purchases,
consent choices), folds the marts, starts nats-server and ``p13n hub serve`` on it,
signs in through the console's form, then requests every page ``--rounds`` times in a
row and prints each page's median, 95th percentile and slowest answer, and its weight
(HTML + the stylesheet, raw and gzip-compressed: the console sends no script). The
first answer of each page is reported apart. An experiment's results come from the
hub's snapshots (every ``P13N_HUB_CONSOLE_RESULTS_TTL_S``, the first at start); the
bench waits for the first snapshot and reports how long it took.

    python tests/bench/console.py [--events 1000000] [--rounds 20] [--dir DIR]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import http.cookiejar
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.auth import create_token  # noqa: E402
from hub.storage.sqlite import SqliteStore  # noqa: E402
from models.erasure import Tokenizer  # noqa: E402
from p13n.procs import Child, free_port, p13n_command, spawn, start_nats, wait_http  # noqa: E402
from tests.bench.erasure import KEY, build_warehouse  # noqa: E402

PAGES = ("/console/", "/console/fleet", "/console/models", "/console/experiments", "/console/experiments/bench-exp",
         "/console/data", "/console/privacy")  # fmt: skip


def add_experiment_and_consent(data: Path, exposed: int) -> None:
    """An experiment of ``exposed`` visitors (two exposures each, a purchase for one in
    ten) and a consent choice for each of them, in the warehouse."""
    wh = sqlite3.connect(data / "warehouse.sqlite")
    rng = random.Random(11)
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    consent: list[tuple[object, ...]] = []
    for v in range(exposed):
        visitor = f"benchvisitor{v:012d}"
        variant = ("control", "a")[v % 2]
        when = now - timedelta(days=rng.uniform(0, 13))
        props = json.dumps({"experiment": "bench-exp", "variant": variant})
        for k in range(2):
            t = (when + timedelta(minutes=k)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            rows.append((f"x{v:010d}{k}", "exposure", t, t, "bench", visitor, None, None, None, None, None, props, None))
        if v % 10 == 0:
            t = (when + timedelta(hours=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            rows.append((f"p{v:010d}", "purchase", t, t, "bench", visitor, None, "sku1", None, 2500, "EUR", None, None))
        t = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        granted = ["necessary", "analytics", "personalization"] if v % 3 else ["necessary"]
        consent.append((f"c{v:010d}", visitor, json.dumps(granted), "banner", "bench", t, t))
    wh.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    wh.executemany(
        "INSERT INTO consent_log (event_id, subject, categories, source, edge, ts, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        consent,
    )
    wh.commit()
    wh.close()


def request(
    opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None, **headers: str
) -> tuple[int, bytes, float]:
    req = urllib.request.Request(url, data=data, headers=headers)
    t = time.perf_counter()
    with opener.open(req, timeout=60) as resp:
        body = resp.read()
        return resp.status, body, time.perf_counter() - t


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--exposed", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="reuse (or keep) the hub data here")
    a = ap.parse_args()
    work = a.dir or Path(tempfile.mkdtemp(prefix="p13n-console-bench-"))
    data = work / "hub"
    built: dict[str, float] = {}
    if not (data / "warehouse.sqlite").exists():
        t = time.perf_counter()
        data.mkdir(parents=True, exist_ok=True)
        build_warehouse(data, a.events)
        add_experiment_and_consent(data, a.exposed)
        store = SqliteStore(data)
        store.tokenizer = Tokenizer(KEY)
        while store.refresh_marts(limit=1_000_000):
            pass
        store.close()
        built["build_s"] = round(time.perf_counter() - t, 1)
        print(f"built {a.events} events (+ the experiment) in {built['build_s']} s", flush=True)
    children: list[Child] = []
    try:
        nats_child, nats_port = start_nats(work / "nats")
        children.append(nats_child)
        tokens = work / "tokens.json"
        if tokens.exists():
            tokens.unlink()
        token = create_token(tokens, "bench", "admin")
        port = free_port()
        env = {
            "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
            "P13N_HUB_NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "P13N_HUB_DATA_DIR": str(data),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_TOKENS_FILE": str(tokens),
            "P13N_HUB_PSEUDONYM_KEY": KEY.decode(),
        }
        hub = spawn("hub", p13n_command("hub", "serve"), work, env)
        children.append(hub)
        url = f"http://127.0.0.1:{port}"
        wait_http(hub, url + "/v1/healthz", timeout_s=120)
        # the hub snapshots every experiment's results at start (then every TTL): wait
        # for the first, as a page an operator opens later finds it done
        t = time.perf_counter()
        auth = {"Authorization": f"Bearer {token}"}
        while time.perf_counter() - t < 300:
            _, body, _ = request(urllib.request.build_opener(), url + "/v1/jobs", None, **auth)
            job = next(j for j in json.loads(body)["jobs"] if j["name"] == "experiment-snapshots")
            if job["last_success"]:
                break
            time.sleep(0.2)
        built["first_snapshot_s"] = round(time.perf_counter() - t, 1)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        form = urllib.parse.urlencode({"token": token}).encode()
        status, _, _ = request(opener, url + "/console/sign-in", form, Origin=url)
        assert status == 200 and any(c.name == "p13n_console" for c in jar), "sign-in failed"
        _, css, _ = request(opener, url + "/console/static/console.css")
        pages: dict[str, Any] = {}
        for path in PAGES:
            status, body, first = request(opener, url + path)  # the first answer (experiment results computed)
            assert status == 200, (path, status)
            times = []
            for _ in range(a.rounds):
                _, body, took = request(opener, url + path)
                times.append(took * 1000)
            pages[path] = {
                "first_ms": round(first * 1000, 1),
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(pct(times, 0.95), 1),
                "max_ms": round(max(times), 1),
                "html_bytes": len(body),
                "html_css_gzip_bytes": len(gzip.compress(body)) + len(gzip.compress(css)),
            }
            print(f"{path}: {pages[path]}", flush=True)
    finally:
        for child in reversed(children):
            child.stop()
    summary = {
        "bench": "console",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "events": a.events,
        "exposed": a.exposed,
        "rounds": a.rounds,
        **built,
        "css_bytes": len(css),
        "slowest_p95_ms": max(p["p95_ms"] for p in pages.values()),
        "heaviest_gzip_bytes": max(p["html_css_gzip_bytes"] for p in pages.values()),
        "pages": pages,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
