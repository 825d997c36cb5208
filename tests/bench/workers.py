"""Agent worker processes (``P13N_EDGE_WORKERS``): memory per worker and throughput.

Uses ``tests/bench/decision.py``'s setup (a 20,000-item bundle, its templates, nginx in
SSI mode in front of the agent, wrk). For 1, 2 and 4 workers it starts the agent, fills
live sessions through ``/_p13n/collect`` (spread over the workers by the kernel), runs
the decision bench's pages (product page reloaded, a new visitor each request, the
one-round-trip variant, the segment-only page, and the same with the class cookie),
then the agent alone (``/_p13n/decide`` straight from wrk, no nginx: how far the agent
scales when it need not share the two cores with nginx), then reads every process's
memory from ``/proc/PID/smaps_rollup``:

* RSS, PSS (shared pages split between the processes sharing them) and USS (private)
  of the server's parent and of each worker;
* **the cost of an extra worker**: (total PSS with N workers − total PSS with 1) / (N − 1),
  the memory the machine really spends on it.

    python tests/bench/workers.py --work DIR [--sessions 25000] [--duration 10] [--counts 1,2,4]

``--work`` as for decision.py (its bundle is reused). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import decision as d
from decision import REPO  # noqa: F401  (puts the project on the path)
from worker_memory import smaps  # RSS, PSS, USS of one process

from p13n.procs import free_port


def memory(parent: int) -> dict[str, Any]:
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()]
    each = [smaps(p) for p in workers]
    top = smaps(parent)
    return {
        "parent": top,
        "workers": each,
        "total_pss_mb": round(top["pss_mb"] + sum(w["pss_mb"] for w in each), 1),
        "worker_uss_mb_max": max(w["uss_mb"] for w in each),
    }


def direct(work: Path, agent_pid: int, port: int, duration: int, visitors: int) -> dict[str, float]:
    """The agent alone, without nginx: ``/_p13n/decide`` for the product page's three
    slots, a filled session's visitor each request (every model call runs, ~0.6 ms of
    agent CPU, so wrk's own share of the two cores stays small). How far the agent
    scales with its workers when it is not sharing the cores with nginx."""
    import edge_throughput as et

    script = work / "rotate-direct.lua"
    script.write_text(d.ROTATE_LUA.replace("VISITORS", str(visitors)))
    url = f"http://127.0.0.1:{port}/_p13n/decide?slots=hero,offer,recs&page={d.PAGE}"
    et.run_wrk(url, 2, 16, 1, str(script))  # warm-up
    cpu = d.agent_cpu_s(agent_pid)
    r = et.run_wrk(url, duration, 16, 1, str(script))
    cpu = d.agent_cpu_s(agent_pid) - cpu
    return {
        "direct_rps": r["rps"],
        "direct_p99_ms": r["p99_ms"],
        "direct_agent_cores": round(cpu / duration, 2),
        "direct_agent_cpu_us_per_request": round(cpu / (r["rps"] * duration) * 1e6, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=300_000)
    ap.add_argument("--sessions", type=int, default=25_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--counts", default="1,2,4", help="worker counts to measure (the first is the baseline)")
    ap.add_argument("--work", default="", help="keep the work directory here and reuse its bundle on the next run")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            print(f"{tool} is needed (apt-get install wrk nginx)", file=sys.stderr)
            return 2
    counts = [int(c) for c in args.counts.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="p13n-workers-"))
    figures: dict[str, Any] = {}
    try:
        shutil.rmtree(work / "edge", ignore_errors=True)
        shutil.rmtree(work / "sites", ignore_errors=True)
        tpl = d.make_templates(work, args.items)
        kept = sorted((work / "bundles").glob("bundle-v*.tar")) if args.work else []
        bundle, key = (
            (kept[-1], work / "keys" / "bundle-signing.pub") if kept else d.train(work, tpl, args.items, args.interactions)
        )
        port = free_port()
        for n in counts:
            shutil.rmtree(work / "edge", ignore_errors=True)
            agent = d.start_agent(work, tpl, bundle, key, port, WORKERS=str(n))
            try:
                fill_s = d.fill_sessions(f"http://127.0.0.1:{port}", args.sessions, args.items)
                time.sleep(2.0)
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_p13n/healthz").read())
                assert health["workers"] == n, health
                out = d.measure(work / "sites" / str(n), tpl, agent.proc.pid, port, args.duration, args.sessions)
                out.update(direct(work, agent.proc.pid, port, args.duration, args.sessions))
                out["fill_collects_per_s"] = round(args.sessions / fill_s)
                out["memory"] = memory(agent.proc.pid)
                figures[f"workers_{n}"] = out
                print(f"{n} worker(s):", json.dumps(out), flush=True)
            finally:
                agent.stop()
        base = figures[f"workers_{counts[0]}"]
        for n in counts[1:]:
            m = figures[f"workers_{n}"]
            m["extra_worker_pss_mb"] = round((m["memory"]["total_pss_mb"] - base["memory"]["total_pss_mb"]) / (n - counts[0]), 1)
            for page in ("reload", "new_visitor", "segment", "reload_shared", "direct"):
                m[f"{page}_speedup"] = round(m[f"{page}_rps"] / base[f"{page}_rps"], 2)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        f"workers_{n}": {
            k: v
            for k, v in figures[f"workers_{n}"].items()
            if k.endswith(
                ("_ratio", "_speedup", "_pss_mb", "_rps", "_cpu_us_per_page", "_p99_ms", "_per_s", "_cores", "_request")
            )
            or k == "memory"
        }
        for n in counts
    }
    print(json.dumps({"bench": "workers", "items": args.items, "sessions": args.sessions, "cpus": os.cpu_count(), **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
