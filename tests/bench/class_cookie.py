"""What issuing the class cookie costs the collect path (docs/SLOTS.md, *Fragments nginx
shares*).

Starts the agent with ``tests/bench/decision.py``'s 20,000-item bundle (segment model
included) and posts one ``/_p13n/collect`` batch (three product views) for each of N new
visitors, with shared fragments off (``P13N_EDGE_SHARED_FRAGMENT_TTL_S=0``, as before) and
on, in alternation (three rounds by default); reports the agent's CPU time per batch (user + system over the
run) and batches/s.

    python tests/bench/class_cookie.py --work DIR [--visitors 20000]

``--work``: a ``tests/bench/decision.py --work`` directory (its bundle and templates).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from decision import agent_cpu_s, fill_sessions, start_agent

from p13n.procs import free_port


def run(work: Path, ttl: float, visitors: int, items: int) -> dict[str, Any]:
    bundle = sorted((work / "bundles").glob("bundle-v*.tar"))[-1]
    shutil.rmtree(work / "edge", ignore_errors=True)  # new visitors every run
    port = free_port()
    agent = start_agent(
        work, work / "templates", bundle, work / "keys" / "bundle-signing.pub", port, SHARED_FRAGMENT_TTL_S=str(ttl)
    )
    try:
        fill_sessions(f"http://127.0.0.1:{port}", 2000, items)  # warm-up
        cpu = agent_cpu_s(agent.proc.pid)
        wall = fill_sessions(f"http://127.0.0.1:{port}", visitors, items, first=2000)
        cpu = agent_cpu_s(agent.proc.pid) - cpu
        return {"agent_cpu_us_per_batch": round(cpu / visitors * 1e6, 1), "batches_per_s": round(visitors / wall, 1)}
    finally:
        agent.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="a decision.py work directory (its bundle and templates)")
    ap.add_argument("--visitors", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work)
    figures: dict[str, Any] = {"bench": "class_cookie", "visitors": args.visitors}
    for rnd in range(args.rounds):  # off, on, off, on…: drift shows as a gap between rounds
        for name, ttl in (("off", 0.0), ("on", 60.0)):
            result = run(work, ttl, args.visitors, args.items)
            figures[f"{name}_{rnd}"] = result
            print(name, rnd, json.dumps(result), flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
