"""Scale-out benchmark, NATS part: failover of a three-node JetStream cluster and of a
site's leaf link, with the event loss and duplication counts under each fault.

1. A three-node cluster (``p13n nats-config --cluster``), the hub on three replicas, one
   edge on all three URLs. Events go in through the edge at a steady rate; the node
   leading the events stream is killed, later restarted. Reports how long no event
   was stored (the failover gap), and sent vs stored vs distinct in the warehouse.
2. A site's leaf node: the hub's server is killed for ``--outage`` seconds while the
   edge keeps collecting; reports the outbox depth at the end of the outage, the time
   from the server's restart to every event stored, and the same counts.

3. Two hub processes with the job lease (``P13N_HUB_JOB_LEASE_S``): the holder is
   killed without releasing it, ``--rounds`` times; reports how long until the other
   process starts a scheduled job, and whether two processes ever held it at once.

4. Ingest into PostgreSQL (``P13N_HUB_DATABASE_URL``; a local server from Debian's
   package, durable settings) with 1, 2 and 3 hub processes: ``--events`` events
   pre-filled in ``P13N_EVENTS`` (500 a message, as ``ingest.py``), timed until the
   counters have them all and the marts have folded them. With 3 hubs one is killed
   (SIGKILL) a third of the way in. Reports events/s, the exactly-once check (rows,
   distinct ids, lake rows, the redelivered duplicates the ids absorbed) and the CPU
   seconds the PostgreSQL server and the hub processes used, to show what limits.

    python tests/bench/scale.py [--rate 200] [--seconds 20] [--outage 5] [--events 1000000] [--only postgres]

Everything listens on 127.0.0.1. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.auth import create_token  # noqa: E402
from models import nats_layout as L  # noqa: E402
from p13n.procs import (  # noqa: E402
    DEFAULT_TEMPLATES,
    Child,
    free_port,
    p13n_command,
    spawn,
    start_nats_cluster,
    start_nats_site,
    wait_http,
)
from tests.integration.helpers import descendants  # noqa: E402

COOKIE = "p13n_id=scalevisitor000000000001"


def start_hub(work: Path, nats_url: str, **env: str) -> tuple[Child, str, str]:
    port = free_port()
    tokens = work / "tokens.json"
    token = create_token(tokens, "bench", "viewer")
    child = spawn(
        "hub",
        p13n_command("hub", "serve"),
        work,
        {
            "P13N_HUB_TOKENS_FILE": str(tokens),
            "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
            "P13N_HUB_NATS_URL": nats_url,
            "P13N_HUB_DATA_DIR": str(work / "hub"),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_NATS_RETRY_S": "0.1",
            **{f"P13N_HUB_{k}": v for k, v in env.items()},
        },
    )
    wait_http(child, f"http://127.0.0.1:{port}/v1/healthz", timeout_s=30)
    return child, f"http://127.0.0.1:{port}", token


def start_edge(work: Path, nats_url: str) -> tuple[Child, str]:
    port = free_port()
    child = spawn(
        "edge",
        p13n_command("edge", "serve"),
        work,
        {
            "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
            "P13N_EDGE_WORKERS": "1",  # as its figures in docs/PERFORMANCE.md were measured
            "P13N_EDGE_DATA_DIR": str(work / "edge"),
            "P13N_EDGE_ID": "edge-1",
            "P13N_EDGE_NATS_URL": nats_url,
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
            "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
        },
    )
    wait_http(child, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=30)
    return child, f"http://127.0.0.1:{port}"


class Sender:
    """Page views through the edge's collect endpoint at a steady rate (batches of 10)."""

    def __init__(self, edge: str, rate: float) -> None:
        self.edge, self.rate = edge, rate
        self.sent: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        interval = 10 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            ids = [uuid.uuid4().hex for _ in range(10)]
            body = json.dumps({"events": [{"event_id": i, "type": "page_view", "url": "https://s/p/dr01"} for i in ids]})
            req = urllib.request.Request(
                self.edge + "/_p13n/collect",
                data=body.encode(),
                headers={"Content-Type": "application/json", "Cookie": COOKIE},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 202:
                        self.sent += ids
                    else:
                        self.refused += 10
            except OSError:
                self.refused += 10
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Sender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def stored(hub_data: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{hub_data / 'warehouse.sqlite'}?mode=ro", uri=True)
    try:
        total, distinct = db.execute("SELECT count(*), count(DISTINCT event_id) FROM events WHERE type = 'page_view'").fetchone()
        return int(total), int(distinct)
    finally:
        db.close()


def stored_ids(hub_data: Path) -> set[str]:
    db = sqlite3.connect(f"file:{hub_data / 'warehouse.sqlite'}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT event_id FROM events WHERE type = 'page_view'")}
    finally:
        db.close()


def watch_gap(hub_data: Path, stop: threading.Event, since: list[float]) -> list[float]:
    """Longest time without a new stored event after ``since[0]`` (filled by the caller)."""
    gaps: list[float] = [0.0]

    def run() -> None:
        last_count, last_change = -1, time.monotonic()
        while not stop.is_set():
            try:
                count = stored(hub_data)[0]
            except sqlite3.Error:
                count = last_count
            now = time.monotonic()
            if count != last_count:
                if since and last_change >= since[0] - 1.0:
                    gaps[0] = max(gaps[0], now - last_change)
                last_count, last_change = count, now
            time.sleep(0.02)

    threading.Thread(target=run, daemon=True).start()
    return gaps


def wait_stored(hub_data: Path, n: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if stored(hub_data)[0] >= n:
                return time.monotonic() - started
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    return float("nan")


def stream_leader(nats_url: str) -> str:
    import nats

    async def leader() -> str:
        nc = await nats.connect(nats_url.split(","))
        try:
            info = await nc.jetstream().stream_info(L.EVENTS_STREAM)
            assert info.cluster is not None
            return str(info.cluster.leader)
        finally:
            await nc.close()

    return asyncio.run(leader())


def cluster_failover(work: Path, rate: float, seconds: float) -> dict[str, Any]:
    cluster = start_nats_cluster(work / "cluster", ["edge-1"])
    children: list[Child] = []
    try:
        hub, _, _ = start_hub(work, cluster.hub_url, NATS_REPLICAS="3")
        children.append(hub)
        edge, edge_url = start_edge(work, cluster.edge_urls["edge-1"])
        children.append(edge)
        stop = threading.Event()
        killed_at: list[float] = []
        gaps = watch_gap(work / "hub", stop, killed_at)
        with Sender(edge_url, rate) as sender:
            time.sleep(seconds / 4)
            leader = stream_leader(cluster.hub_url)
            victim = int(leader.lstrip("n"))
            killed_at.append(time.monotonic())
            cluster.nodes[victim].proc.kill()
            cluster.nodes[victim].proc.wait()
            time.sleep(seconds / 2)
            cluster.restart(victim)
            time.sleep(seconds / 4)
        catch_up = wait_stored(work / "hub", len(sender.sent), 60)
        stop.set()
        total, distinct = stored(work / "hub")
        lost = len(set(sender.sent) - stored_ids(work / "hub"))
        return {
            "killed": f"stream leader {leader}",
            "sent": len(sender.sent),
            "refused_by_edge": sender.refused,
            "stored": total,
            "distinct": distinct,
            "lost": lost,
            "duplicated": total - distinct,
            "failover_gap_s": round(gaps[0], 2),
            "drain_after_s": round(catch_up, 2),
        }
    finally:
        for child in reversed(children):
            child.stop()
        cluster.stop()


def leaf_outage(work: Path, rate: float, outage: float) -> dict[str, Any]:
    site = start_nats_site(work / "nats", ["edge-1"])
    children: list[Child] = []
    try:
        hub, _, _ = start_hub(work, site.hub_url)
        children.append(hub)
        edge, edge_url = start_edge(work, site.edge_urls["edge-1"])
        children.append(edge)
        with Sender(edge_url, rate) as sender:
            time.sleep(2)
            site.hub_server.proc.kill()
            site.hub_server.proc.wait()
            time.sleep(outage)
            depth = json.loads(urllib.request.urlopen(edge_url + "/_p13n/healthz").read())["outbox_depth"]
            restarted = time.monotonic()
            site.restart_hub_server()
            time.sleep(2)
        catch_up = wait_stored(work / "hub", len(sender.sent), 120)
        catch_up_s = float("nan") if math.isnan(catch_up) else time.monotonic() - restarted
        total, distinct = stored(work / "hub")
        lost = len(set(sender.sent) - stored_ids(work / "hub"))
        return {
            "outage_s": outage,
            "sent": len(sender.sent),
            "refused_by_edge": sender.refused,
            "outbox_depth_in_outage": depth,
            "stored": total,
            "distinct": distinct,
            "lost": lost,
            "duplicated": total - distinct,
            "all_stored_after_restart_s": round(catch_up_s, 2),
        }
    finally:
        for child in reversed(children):
            child.stop()
        site.stop()


def jobs_view(url: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(url + "/v1/jobs", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def job_leader_failover(work: Path, lease_s: float, rounds: int) -> dict[str, Any]:
    """Two hub processes with the job lease: the holder is killed (SIGKILL, no release);
    the time until the other process starts a scheduled job, over ``rounds`` kills."""
    from p13n.procs import start_nats

    nats_child, port = start_nats(work / "nats")
    url = f"nats://127.0.0.1:{port}"
    hubs: list[tuple[Child, str, str]] = []
    moved: list[float] = []
    overlaps = 0
    try:
        for i in range(2):
            d = work / f"hub{i}"
            d.mkdir()
            hubs.append(start_hub(d, url, JOB_LEASE_S=str(lease_s), CONSOLE_SAMPLE_S="1"))
        for _ in range(rounds):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                held = [h for h in hubs if (jobs_view(h[1], h[2])["lease"] or {}).get("held")]
                if held:
                    break
                time.sleep(0.1)
            holders = [h for h in hubs if jobs_view(h[1], h[2])["lease"]["held"]]
            overlaps += len(holders) > 1
            leader = holders[0]
            other = next(h for h in hubs if h is not leader)
            before = sum(j["runs"] for j in jobs_view(other[1], other[2])["jobs"] if j["kind"] == "periodic")
            for pid in [*descendants(leader[0].proc.pid), leader[0].proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            while time.monotonic() - killed < 30:
                runs = sum(j["runs"] for j in jobs_view(other[1], other[2])["jobs"] if j["kind"] == "periodic")
                if runs > before:
                    break
                time.sleep(0.05)
            moved.append(round(time.monotonic() - killed, 2))
            # the killed process comes back as a follower for the next round
            i = hubs.index(leader)
            d = work / f"hub{i}-{len(moved)}"
            d.mkdir()
            hubs[i] = start_hub(d, url, JOB_LEASE_S=str(lease_s), CONSOLE_SAMPLE_S="1")
        return {"lease_s": lease_s, "rounds": rounds, "jobs_moved_after_s": moved, "rounds_with_two_holders": overlaps}
    finally:
        for child, _, _ in hubs:
            child.stop()
        nats_child.stop()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their children that have exited (waited for)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def postgres_ingest(work: Path, events: int, hubs: int, kill_one: bool) -> dict[str, Any]:
    """``events`` pre-filled events ingested by ``hubs`` hub processes into one new
    PostgreSQL database (see the module docstring, part 4)."""
    import psycopg

    from p13n.procs import start_nats
    from tests.bench.ingest import prefill
    from tests.postgres_server import PostgresServer, binary_dir

    found = binary_dir()
    if found is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(found, settings=("shared_buffers=512MB", "max_wal_size=4GB")).start()
    nats_child, port = start_nats(work / "nats")
    url = f"nats://127.0.0.1:{port}"
    children: list[tuple[Child, str, str]] = []
    try:
        database = server.create("bench")
        prefill_s = asyncio.run(prefill(url, events))
        pg_pids = [int(p) for p in (server.data / "postmaster.pid").read_text().split()[:1]]
        pg_before = cpu_seconds(tree(pg_pids[0]))
        started = time.perf_counter()
        for i in range(hubs):
            (work / f"hub{i}").mkdir()
        # started side by side: each consumes from its start, none waits for another
        starters = [
            threading.Thread(
                target=lambda i=i: children.append(
                    start_hub(work / f"hub{i}", url, DATABASE_URL=database, JOB_LEASE_S="3", PROFILE_SYNC_S="1")
                )
            )
            for i in range(hubs)
        ]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        killed = False
        hub_cpu = 0.0
        accepted = 0
        done_s = warehouse_s = 0.0
        with psycopg.connect(database, autocommit=True) as db:
            while time.perf_counter() - started < 1200:
                accepted = int(
                    (db.execute("SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'accepted'").fetchone() or (0,))[0]
                )
                if kill_one and not killed and accepted >= events // 3:
                    victim = children[0][0]
                    hub_cpu += cpu_seconds(tree(victim.proc.pid))
                    for pid in tree(victim.proc.pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    killed = True
                if accepted >= events and not warehouse_s:
                    warehouse_s = time.perf_counter() - started
                if warehouse_s:
                    mark = db.execute("SELECT mark FROM watermarks WHERE name = 'events'").fetchone()
                    top = db.execute("SELECT max(txid) FROM events").fetchone()
                    if mark and top and top[0] is not None and int(mark[0]) > int(top[0]):  # every tier holds every event
                        done_s = time.perf_counter() - started
                        break
                time.sleep(0.2)
            hub_cpu += sum(cpu_seconds(tree(c.proc.pid)) for c, _, _ in children[1 if killed else 0 :])
            pg_cpu = cpu_seconds(tree(pg_pids[0])) - pg_before
            rows, distinct = db.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() or (0, 0)
            lake = (db.execute("SELECT count(*) FROM lake_events").fetchone() or (0,))[0]
            duplicates = int(
                (db.execute("SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'duplicates'").fetchone() or (0,))[0]
            )
            writers = db.execute("SELECT count(*) FROM counters WHERE name = 'accepted' AND value > 0").fetchone()
        elapsed = done_s or (time.perf_counter() - started)
        return {
            "hubs": hubs,
            "killed_one": killed,
            "events": events,
            "prefill_s": round(prefill_s, 2),
            "warehouse_s": round(warehouse_s, 2),
            "all_tiers_s": round(elapsed, 2),
            "events_per_s": round(events / warehouse_s) if warehouse_s else 0,
            "events_per_s_all_tiers": round(events / elapsed) if done_s else 0,
            "rows": int(rows),
            "distinct_ids": int(distinct),
            "lake_rows": int(lake),
            "duplicates_absorbed": duplicates,
            "exactly_once": int(rows) == int(distinct) == int(lake) == events and accepted == events,
            "hubs_that_stored": int(writers[0]) if writers else 0,
            "cpu_s_postgres": round(pg_cpu, 1),
            "cpu_s_hubs": round(hub_cpu, 1),
        }
    finally:
        for child, _, _ in children:
            child.stop()
        nats_child.stop()
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="events per second through the edge")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the cluster run")
    ap.add_argument("--outage", type=float, default=5.0, help="seconds the leaf link is down")
    ap.add_argument("--lease", type=float, default=3.0, help="the job lease (P13N_HUB_JOB_LEASE_S) of the leader test")
    ap.add_argument("--rounds", type=int, default=3, help="job leaders killed")
    ap.add_argument("--events", type=int, default=1_000_000, help="events of each PostgreSQL ingest run")
    ap.add_argument("--only", choices=("nats", "postgres"), help="run one part only")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p13n-scale-"))
    cluster = leaf = lease = None
    postgres: list[dict[str, Any]] = []
    try:
        if args.only != "postgres":
            for name in ("cluster-run", "leaf-run", "lease-run"):
                (work / name).mkdir()
            cluster = cluster_failover(work / "cluster-run", args.rate, args.seconds)
            print("cluster, stream leader killed and restarted:", json.dumps(cluster), flush=True)
            leaf = leaf_outage(work / "leaf-run", args.rate, args.outage)
            print("leaf link down and back:", json.dumps(leaf), flush=True)
            lease = job_leader_failover(work / "lease-run", args.lease, args.rounds)
            print("job leader killed:", json.dumps(lease), flush=True)
        if args.only != "nats":
            for hubs, kill_one in ((1, False), (2, False), (3, False), (3, True)):
                run = work / f"pg-{hubs}-{int(kill_one)}"
                run.mkdir()
                result = postgres_ingest(run, args.events, hubs, kill_one)
                postgres.append(result)
                print("PostgreSQL ingest:", json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "scale",
                "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                "rate": args.rate,
                "cluster_failover": cluster,
                "leaf_outage": leaf,
                "job_leader_failover": lease,
                "postgres_ingest": postgres,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
