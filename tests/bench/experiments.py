"""Experiment results at scale: one experiment with 3 variations and 3 metrics over 10M
exposures and 2M metric events in the warehouse.

Builds a hub warehouse directly in SQLite (``--visitors`` visitors, each exposed
``--exposures-per-visitor`` times in the variation :func:`models.experiments.assign`
gives them, over the last 14 days; ``--metric-events`` purchases, add-to-carts and
clicks spread over the same visitors, some before their first exposure; 5 % of the
visitors linked to a user id by an identify), creates the indexes afterwards (timed),
folds the marts as the hub's refresh does (the exposures mart among them, timed), then
times ``HubStore.experiment`` (the SQL) and the statistics, cold and warm, and a bandit's
weight update on the same data (one conversion metric, then Thompson sampling). The
bandit keeps its evidence between updates (hub/storage/sqlite_bandits.py): timed are
the first update of a bandit added now, the first update over the 10M exposures already
stored (once per bandit and metric), and the update after a busy interval's new events
(30k exposures, 3k purchases), checked equal to the full recount by the results' SQL.

    python tests/bench/experiments.py [--visitors 1000000] [--exposures-per-visitor 10] [--metric-events 2000000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.experiments.analysis import Design, results  # noqa: E402
from hub.experiments.metrics import Metric  # noqa: E402
from hub.storage.sqlite import SqliteStore  # noqa: E402
from hub.storage.sqlite_experiments import INDEXES  # noqa: E402
from models.bandit import thompson  # noqa: E402
from models.erasure import Tokenizer  # noqa: E402
from models.experiments import assign  # noqa: E402

VARIANTS = ("control", "a", "b")
METRICS = (
    Metric("purchase", "conversion", "purchase", 168.0),
    Metric("revenue", "revenue", "purchase", 168.0, cuped_days=14.0),
    Metric("clicks", "count", "click", 72.0),
)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(data: Path, visitors: int, per_visitor: int, metric_events: int) -> dict[str, float]:
    t0 = time.perf_counter()
    store = SqliteStore(data)
    store.close()
    wh = sqlite3.connect(data / "warehouse.sqlite")
    wh.execute("PRAGMA synchronous=OFF")
    for name in ("idx_events_metric", "idx_events_anonymous_id", "idx_events_user_id"):
        wh.execute(f"DROP INDEX IF EXISTS {name}")
    rng = random.Random(3)
    now = datetime.now(UTC)
    start = now - timedelta(days=14)
    insert = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    rows: list[tuple[object, ...]] = []
    first: list[datetime] = []
    n = 0

    def flush() -> None:
        wh.executemany(insert, rows)
        rows.clear()

    for v in range(visitors):
        visitor = f"benchvisitor{v:011d}"
        variant = VARIANTS[int(assign("bench-exp", visitor, [1, 1, 1]))]
        props = json.dumps({"experiment": "bench-exp", "variant": variant, "slot": "banner"})
        when = start + timedelta(seconds=rng.uniform(0, 13 * 86400))
        first.append(when)
        for k in range(per_visitor):
            t = iso(when + timedelta(minutes=5 * k))
            rows.append((f"x{n:012d}", "exposure", t, t, "bench", visitor, None, None, None, None, None, props, None))
            n += 1
        if len(rows) >= 200_000:
            flush()
    flush()
    kinds = ("purchase", "add_to_cart", "click")
    for m in range(metric_events):
        v = rng.randrange(visitors)
        kind = kinds[m % 3]
        t = iso(first[v] + timedelta(hours=rng.uniform(-72, 200)))
        amount = rng.randint(500, 20_000) if kind == "purchase" else None
        rows.append((f"m{m:012d}", kind, t, t, "bench", f"benchvisitor{v:011d}", None, "sku1", None, amount, "EUR", None, None))
        if len(rows) >= 200_000:
            flush()
    flush()
    wh.executemany(
        "INSERT OR IGNORE INTO identities VALUES (?, ?, ?)",
        [(f"benchvisitor{v:011d}", f"user{v // 2:09d}", iso(now)) for v in range(0, visitors, 20)],
    )
    wh.commit()
    loaded = time.perf_counter() - t0
    t1 = time.perf_counter()
    wh.execute("CREATE INDEX IF NOT EXISTS idx_events_anonymous_id ON events (anonymous_id)")
    wh.execute("CREATE INDEX IF NOT EXISTS idx_events_user_id ON events (user_id) WHERE user_id IS NOT NULL")
    for index in INDEXES:
        wh.execute(index)  # (the exposures mart is folded by the store afterwards)
    wh.execute("ANALYZE")
    wh.commit()
    wh.close()
    return {"load_s": round(loaded, 1), "index_s": round(time.perf_counter() - t1, 1), "events": n + metric_events}


def append_interval(store: SqliteStore, visitors: int, exposures: int = 30_000, purchases: int = 3_000) -> int:
    """A bandit interval's worth of new events (5 minutes of a busy site): exposures of
    new and returning visitors and purchases, ingested as the hub ingests them."""
    rng = random.Random(time.time_ns())
    run = f"{time.time_ns():x}"
    now = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    for n in range(exposures):
        visitor = f"benchvisitor{rng.randrange(int(visitors * 1.1)):011d}"
        variant = VARIANTS[int(assign("bench-exp", visitor, [1, 1, 1]))]
        batch.append({"event_id": f"bx{run}{n}", "type": "exposure", "anonymous_id": visitor, "ts": iso(now),
                      "experiment": "bench-exp", "variant": variant, "slot": "banner"})  # fmt: skip
    for n in range(purchases):
        visitor = f"benchvisitor{rng.randrange(visitors):011d}"
        batch.append({"event_id": f"bp{run}{n}", "type": "purchase", "anonymous_id": visitor, "ts": iso(now),
                      "order_id": f"o{run}{n}", "items": [{"item_id": "sku1", "quantity": 1}],
                      "total": {"amount": 12.5, "currency": "EUR"}})  # fmt: skip
    for start in range(0, len(batch), 5_000):
        store.ingest(batch[start : start + 5_000], "bench", iso(now))
    return len(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--exposures-per-visitor", type=int, default=10)
    ap.add_argument("--metric-events", type=int, default=2_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="reuse (or keep) the warehouse here")
    a = ap.parse_args()
    data = a.dir or Path(tempfile.mkdtemp(prefix="p13n-exp-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    built: dict[str, float] = {}
    if not (data / "warehouse.sqlite").exists():
        built = build(data, a.visitors, a.exposures_per_visitor, a.metric_events)
        print(f"built: {built}")
    store = SqliteStore(data)
    store.tokenizer = Tokenizer(b"bench-key-0123456789abcdef012345")
    t = time.perf_counter()
    folded = 0
    while step := store.refresh_marts(limit=1_000_000):  # what the hub's marts refresh does as events arrive
        folded += step
    if folded:
        built["marts_s"] = round(time.perf_counter() - t, 1)
        print(f"marts folded: {folded} events in {built['marts_s']} s")
    timings = []
    out: dict[str, Any] = {}
    for attempt in ("cold", "warm"):
        t = time.perf_counter()
        agg = store.experiment("bench-exp", METRICS)
        sql_s = time.perf_counter() - t
        t = time.perf_counter()
        out = results(agg, METRICS, Design("control", {v: 1 / 3 for v in VARIANTS}))
        stats_s = time.perf_counter() - t
        timings.append({"run": attempt, "sql_s": round(sql_s, 2), "stats_s": round(stats_s, 4)})
        print(f"{attempt}: SQL {sql_s:.2f} s, statistics {stats_s * 1000:.1f} ms")
    # a bandit's weight update: its conversion metric for every variant, then Thompson
    # sampling. The evidence is kept between updates: the first update folds every event
    # (once per bandit and metric), later ones the events since the last.
    store.marts.execute("DELETE FROM bandit_marks WHERE experiment IN ('bench-exp', 'bench-new')")
    t = time.perf_counter()
    store.bandit_evidence("bench-new", METRICS[0])  # a bandit added now: starts past the folded events
    new_s = time.perf_counter() - t
    print(f"bandit evidence, first update of a new bandit: {new_s * 1000:.1f} ms")
    t = time.perf_counter()
    evidence = store.bandit_evidence("bench-exp", METRICS[0])
    first_s = time.perf_counter() - t
    print(f"bandit evidence, first update over its 10M stored exposures (every event): {first_s:.2f} s")
    appended = append_interval(store, a.visitors)
    t = time.perf_counter()
    evidence = store.bandit_evidence("bench-exp", METRICS[0])
    shares = thompson([evidence[v][1] for v in VARIANTS], [evidence[v][0] for v in VARIANTS])
    bandit_s = time.perf_counter() - t
    print(f"bandit weight update after {appended} new events: {bandit_s:.3f} s -> {[round(x, 3) for x in shares]}")
    store.refresh_marts()
    t = time.perf_counter()
    agg = store.experiment("bench-exp", METRICS[:1])
    full_s = time.perf_counter() - t
    full = {v: (n, int(agg.metrics["purchase"][v].total)) for v, n in agg.users.items()}
    print(f"the same evidence from every exposure (the results' SQL): {full_s:.2f} s, equal: {full == evidence}")
    exposures = sum(n for e in store.experiments() for n in e.exposures.values())
    store.close()
    variants = out["variants"]
    summary = {
        "bench": "experiments",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "visitors": sum(v["users"] for v in variants.values()),  # what the warehouse holds (--dir may be reused)
        "exposures": exposures,
        "metric_events": a.metric_events if "load_s" in built else None,
        **built,
        "timings": timings,
        "bandit_update_s": round(bandit_s, 3),
        "bandit_new_events": appended,
        "bandit_first_update_s": round(first_s, 2),
        "bandit_new_first_update_ms": round(new_s * 1000, 1),
        "bandit_full_recount_s": round(full_s, 2),
        "bandit_evidence_equal": full == evidence,
        "users": {v: variants[v]["users"] for v in variants},
        "srm_p": out["srm"]["p_value"],
        "purchase_lift_a": variants["a"]["metrics"]["purchase"].get("lift"),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
