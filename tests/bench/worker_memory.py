"""What an extra agent worker process would cost in memory, measured before building one.

Opens a ``tests/bench/decision.py`` bundle (20,000 items) and its content the edge's
way, then starts N worker processes two ways and, after each has served the same
decisions (segment, session recommendations through ALS fold-in and the top-k graph,
the page's variant slots), reads each worker's private memory (USS: pages no other
process shares) and PSS from ``/proc/PID/smaps_rollup``:

* ``fork``: the parent loads once, then forks (copy-on-write: what a pre-fork server
  would share);
* ``own``: each forked worker opens the bundle itself (what N independent agents cost).

    python tests/bench/worker_memory.py --work DIR [--workers 3] [--decisions 3000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_agent.decide import decide_page  # noqa: E402
from edge_agent.model_runtime import load_models  # noqa: E402
from models.content import ContentBundle, build_content, load_content  # noqa: E402


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name.strip()] = float(rest.split()[0]) / 1024
    return {
        "rss_mb": round(fields["Rss"], 1),
        "pss_mb": round(fields["Pss"], 1),
        "uss_mb": round(fields["Private_Clean"] + fields["Private_Dirty"], 1),
    }


def serve(models: Any, content: ContentBundle, decisions: int) -> float:
    """The decisions a worker makes for its pages; returns µs per decision."""
    started = time.perf_counter()
    slots: list[tuple[str, dict[str, str]]] = [("hero", {}), ("offer", {}), ("recs", {})]
    for n in range(decisions):
        recent = [[f"i{(n * 7 + k * 131) % 20000}", float(time.time())] for k in range(3)]
        session = {"views": 3, "category_views": {"dresses": 3}, "recent": recent, "bought": []}
        attrs = {"device": "desktop", "country": "", "hour": 12, "consent": ["personalization"], "views": 3}
        attrs["segment"] = models.segment(attrs)
        decide_page(content, attrs, slots, 1000.0, models=models, visitor_id=f"v{n}", session=session)
    return (time.perf_counter() - started) / decisions * 1e6


def worker(load: Any, ready_w: int, go_r: int, decisions: int) -> None:
    """Child: (load,) serve, report, wait to be measured, exit."""
    models, content = load()
    us = serve(models, content, decisions)
    gc.collect()
    os.write(ready_w, json.dumps({"us_per_decision": round(us, 1)}).encode() + b"\n")
    os.read(go_r, 1)  # stay alive until the parent has read /proc
    os._exit(0)


def run(mode: str, workers: int, decisions: int, bundle: str, key: str, tpl: Path) -> dict[str, Any]:
    def load() -> tuple[Any, ContentBundle]:
        return load_models(bundle, key, 10_000), load_content(build_content(tpl))

    preloaded = load() if mode == "fork" else None
    if preloaded is not None:
        gc.collect()
        gc.freeze()  # what the agent does after start-up: the collector leaves them alone

    def inherited() -> tuple[Any, ContentBundle]:
        assert preloaded is not None
        return preloaded

    parent = smaps(os.getpid())
    pids, pipes = [], []
    for _ in range(workers):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            worker(inherited if preloaded is not None else load, ready_w, go_r, decisions)
        pids.append(pid)
        pipes.append((ready_r, go_w))
    children = []
    for pid, (ready_r, _) in zip(pids, pipes, strict=True):
        line = b""
        while not line.endswith(b"\n"):
            line += os.read(ready_r, 4096)
        children.append({**json.loads(line), **smaps(pid)})
    for pid, (_, go_w) in zip(pids, pipes, strict=True):
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
    if preloaded is not None:
        gc.unfreeze()
    preloaded = None  # the parent lets go of its copy before the next mode
    gc.collect()
    return {"parent": parent, "workers": children}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="a decision.py work directory (its bundle and templates)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--decisions", type=int, default=3000)
    args = ap.parse_args()
    work = Path(args.work)
    bundle = str(sorted((work / "bundles").glob("bundle-v*.tar"))[-1])
    key = str(work / "keys" / "bundle-signing.pub")
    figures: dict[str, Any] = {"bench": "worker_memory", "workers": args.workers}
    for mode in ("own", "fork"):  # own first: the parent is still small when it forks
        result = run(mode, args.workers, args.decisions, bundle, key, work / "templates")
        uss = [w["uss_mb"] for w in result["workers"]]
        result["worker_uss_mb_max"] = max(uss)
        figures[mode] = result
        print(mode, json.dumps(result), flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
