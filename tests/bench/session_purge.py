"""How long the edge's session purge makes a page wait (``EdgeStore.purge_expired_sessions``).

Fills an edge store with N expired sessions (about 1 KB of JSON each, as a browsing
session) and 10,000 live ones, then purges in a thread, as the agent does every minute,
while this thread reads live sessions back to back, as pages of visitors not held in
memory do. Reports the purge's duration and the longest and 99th-percentile read
during it: one statement (before) against batches (now), in the same run.

    python tests/bench/session_purge.py [--sessions 100000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_agent.store import PURGE_BATCH, EdgeStore  # noqa: E402

NOW = 1_800_000_000.0


def session_json(i: int) -> str:
    recent = [[f"i{(i * 7 + k) % 20000}", NOW - k] for k in range(20)]
    return json.dumps({"views": 20, "clicks": 2, "category_views": {"dresses": 12, "shoes": 8}, "recent": recent, "bought": []})


def run(store: EdgeStore, expired: int, batch: int) -> dict[str, Any]:
    store.put_sessions([(f"expired{i:017d}", session_json(i), NOW - 1) for i in range(expired)])
    live = [f"live{i:020d}" for i in range(10_000)]
    store.put_sessions([(v, session_json(i), NOW + 3600) for i, v in enumerate(live)])
    done = threading.Event()
    result: dict[str, Any] = {}

    def purge() -> None:
        started = time.perf_counter()
        result["purged"] = store.purge_expired_sessions(NOW, batch=batch)
        result["purge_s"] = round(time.perf_counter() - started, 3)
        done.set()

    waits: list[float] = []
    worker = threading.Thread(target=purge)
    worker.start()
    n = 0
    while not done.is_set():
        t = time.perf_counter()
        store.get_session(live[n % len(live)], NOW)
        waits.append(time.perf_counter() - t)
        n += 1
    worker.join()
    q = statistics.quantiles(waits, n=100) if len(waits) >= 2 else [waits[0]] * 99
    result.update({"reads": len(waits), "read_p99_ms": round(q[98] * 1000, 2), "read_max_ms": round(max(waits) * 1000, 2)})
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    args = ap.parse_args()
    figures: dict[str, Any] = {"bench": "session_purge", "expired": args.sessions}
    with tempfile.TemporaryDirectory(prefix="p13n-purge-") as tmp:
        store = EdgeStore(Path(tmp) / "edge.sqlite3")
        try:
            for name, batch in (("one_statement", 0), ("batched", PURGE_BATCH), ("one_statement_again", 0)):
                figures[name] = run(store, args.sessions, batch)
                print(name, json.dumps(figures[name]), flush=True)
        finally:
            store.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
