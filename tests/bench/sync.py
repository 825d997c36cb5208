"""Hub → edge sync benchmark with 5 edges (real nats-server, real agents).

1. Bundle swap: two ~20 MB signed bundles (20k items, 64 factors) are stored; the live
   pointer alternates between them; time from the pointer update until each edge
   reports the new model version.
2. Profile updates: a profile is written to the KV bucket; time until every edge has
   applied it (read from each edge's SQLite).
3. Catch-up: one edge is stopped, 100k profile updates are written, the edge restarts;
   time until it has applied them all.

    python tests/bench/sync.py [--edges 5] [--swaps 10] [--updates 100] [--catchup 100000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import nats  # noqa: E402

from hub.fleet import activate  # noqa: E402
from models import nats_layout as L  # noqa: E402
from p13n.procs import Child, free_port, p13n_command, spawn, start_nats, wait_http  # noqa: E402


def health(port: int) -> dict[str, object]:
    data: dict[str, object] = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz", timeout=5).read())
    return data


def p99(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=100)[98], 4) if len(samples) >= 2 else round(max(samples), 4)


def spawn_edge(work: Path, name: str, i: int, port: int, data: Path, nats_url: str, key: Path, tpl: Path) -> Child:
    env = {
        "P13N_EDGE_ID": f"bench-{i}",
        "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
        "P13N_EDGE_DATA_DIR": str(data),
        "P13N_ALLOW_DEV_KEYS": "1",
        "P13N_EDGE_TEMPLATES_DIR": str(tpl),
        "P13N_EDGE_NATS_URL": nats_url,
        "P13N_EDGE_BUNDLE_PUBLIC_KEY": str(key),
    }
    return spawn(name, p13n_command("edge", "serve"), work, env)


def start_edge(work: Path, i: int, nats_url: str, key: Path, tpl: Path) -> tuple[Child, int, Path]:
    port = free_port()
    data = work / f"edge-{i}"
    child = spawn_edge(work, f"edge-{i}", i, port, data, nats_url, key, tpl)
    wait_http(child, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=60)
    return child, port, data


def applied(data_dir: Path, subject: str) -> str | None:
    try:
        db = sqlite3.connect(f"file:{data_dir / 'edge.sqlite3'}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT data FROM profiles WHERE subject = ?", (subject,)).fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def cursor(data_dir: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data_dir / 'edge.sqlite3'}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT value FROM meta WHERE name = 'profiles_seq'").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


async def push_bundles(url: str, bundles: list[Path], key: Path) -> None:
    """Store and make live each bundle as the hub's ``POST /v1/bundles`` does."""
    from hub.bundles import upload
    from hub.nats_setup import ensure_layout

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_layout(js)
        for b in bundles:
            entry = await upload(js, b.read_bytes(), key.read_bytes())
            await activate(nc, int(entry["version"]))
    finally:
        await nc.close()


async def kv_put(url: str, items: list[tuple[str, bytes]], concurrency: int = 256) -> int:
    nc = await nats.connect(url)
    kv = await nc.jetstream().key_value(L.PROFILES_BUCKET)
    last = 0
    for start in range(0, len(items), concurrency):
        revs = await asyncio.gather(*(kv.put(k, v) for k, v in items[start : start + concurrency]))
        last = max(revs)
    await nc.close()
    return last


async def repoint(url: str, version: int) -> None:
    nc = await nats.connect(url)
    await activate(nc, version)
    await nc.close()


def main() -> int:
    import decision as D

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", type=int, default=5)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--updates", type=int, default=100)
    ap.add_argument("--catchup", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p13n-sync-"))
    children: list[Child] = []
    try:
        tpl = D.make_templates(work, 20_000)
        b1, key = D.train(work, tpl, 20_000, 200_000)
        b2, _ = D.train(work, tpl, 20_000, 200_000)  # a second version
        size_mb = round(b1.stat().st_size / 1e6, 1)
        nats_child, nport = start_nats(work / "nats")
        children.append(nats_child)
        url = f"nats://127.0.0.1:{nport}"
        asyncio.run(push_bundles(url, [b1, b2], key))  # v2 is live
        edges = [start_edge(work, i, url, key, tpl) for i in range(args.edges)]
        children.extend(e[0] for e in edges)
        deadline = time.monotonic() + 120
        while not all(health(p)["model_version"] == 2 for _, p, _ in edges) and time.monotonic() < deadline:
            time.sleep(0.1)
        swap_s: list[float] = []
        for n in range(args.swaps):
            target = 1 if n % 2 == 0 else 2
            t0 = time.perf_counter()
            asyncio.run(repoint(url, target))
            pending = {p for _, p, _ in edges}
            while pending and time.perf_counter() - t0 < 60:
                for p in list(pending):
                    if health(p)["model_version"] == target:
                        swap_s.append(time.perf_counter() - t0)
                        pending.discard(p)
                time.sleep(0.01)
        print(
            f"bundle {size_mb} MB swaps: p50 {statistics.median(swap_s):.3f} s, p99 {p99(swap_s)} s over {len(swap_s)} edge swaps",
            flush=True,
        )

        visible: list[float] = []
        for n in range(args.updates):
            subject = f"benchsubject{n:012d}"
            body = json.dumps({"views": n}).encode()
            t0 = time.perf_counter()
            asyncio.run(kv_put(url, [(subject, body)]))
            pending_dirs = {d for _, _, d in edges}
            while pending_dirs and time.perf_counter() - t0 < 10:
                for d in list(pending_dirs):
                    if applied(d, subject) is not None:
                        visible.append(time.perf_counter() - t0)
                        pending_dirs.discard(d)
                time.sleep(0.002)
        print(
            f"profile visible at every edge: p50 {statistics.median(visible) * 1000:.1f} ms, p99 {p99(visible) * 1000:.1f} ms",
            flush=True,
        )

        child, _, data = edges[0]
        child.stop()
        items = [(f"catchup{n:09d}", json.dumps({"views": n}).encode()) for n in range(args.catchup)]
        last = asyncio.run(kv_put(url, items))
        t0 = time.perf_counter()
        child2 = spawn_edge(work, "edge-0b", 0, free_port(), data, url, key, tpl)
        children.append(child2)
        while cursor(data) < last and time.perf_counter() - t0 < 300:
            time.sleep(0.05)
        catchup_s = time.perf_counter() - t0
        print(f"catch-up of {args.catchup} profile updates: {catchup_s:.1f} s (including agent start)", flush=True)
    finally:
        for c in reversed(children):
            c.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "sync",
                "edges": args.edges,
                "bundle_mb": size_mb,
                "swap_p50_s": round(statistics.median(swap_s), 3),
                "swap_p99_s": p99(swap_s),
                "profile_visible_p50_ms": round(statistics.median(visible) * 1000, 1),
                "profile_visible_p99_ms": round(p99(visible) * 1000, 1),
                "catchup_updates": args.catchup,
                "catchup_s": round(catchup_s, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
