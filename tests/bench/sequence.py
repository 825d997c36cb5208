"""The next-item protocol (models/next_item.py) on real and planted data: popularity,
ALS, the hybrid (ALS + content) and the sequence model (Word2Vec over sessions) rank
each user's latest item from what came before. Hit rate@10, MRR@10 and fit times.

- Online Retail sample (tests/fixtures/data: real invoices, sparse; items described by
  their stock descriptions for the content side of the hybrid);
- planted chains (models.synthetic.chain_walks: 5,000 visitors walking 20 chains of 60
  items in order, 10 % random steps).

Then the cost of serving it: a 20,000-item catalog (400 chains of 50), ALS and the
sequence vectors fitted on 40,000 visitors' walks, a bundle with and without the
vectors: bundle bytes, the edge's memory to load each, and the decision time of a
session of 8 items through ALS fold-in and through the sequence vectors.

    python tests/bench/sequence.py [--users 5000] [--calls 2000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from retail_data import online_retail  # noqa: E402  (tests/bench/retail_data.py)

from hub.training.evaluate import evaluate_next_item  # noqa: E402
from models.als import ALSParams  # noqa: E402
from models.bundle import build_bundle, generate_key, load_private_key, npy_bytes, open_bundle  # noqa: E402
from models.bundle_runtime import BundleModels  # noqa: E402
from models.data import Interactions, Item  # noqa: E402
from models.features import default_spec  # noqa: E402
from models.onnx_graphs import topk_graph  # noqa: E402
from models.recommenders import ALS, Catalog  # noqa: E402
from models.sequence import SequenceModel, SequenceParams  # noqa: E402
from models.synthetic import chain_walks  # noqa: E402


def run(name: str, data: Interactions, items: dict[str, Item]) -> dict[str, Any]:
    started = time.perf_counter()
    report = evaluate_next_item(data, items, 10, 42).report
    out = {
        "data": name,
        "users": len(set(data.users.tolist())),
        "items": len(set(data.items.tolist())),
        "interactions": len(data),
        "cases": report["cases"],
        "skipped": report["skipped"],
        "models": {m: {k: round(v, 4) for k, v in r.items()} for m, r in report["models"].items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def edge_cost(calls: int) -> dict[str, Any]:
    data = chain_walks(40_000, chains=400, length=50, seed=7)
    catalog = Catalog.build(data)
    t = time.perf_counter()
    als = ALS(catalog, data, ALSParams(factors=64, iterations=10), 7)
    fit_als_s = time.perf_counter() - t
    t = time.perf_counter()
    seq = SequenceModel(catalog, data, SequenceParams(), 7)
    fit_seq_s = time.perf_counter() - t
    key = load_private_key(generate_key()[0])
    common = {
        "items.json": json.dumps({"ids": catalog.items.ids, "popularity": catalog.popularity.tolist()}).encode(),
        "als_topk.onnx": topk_graph(als.factors.item_factors, 50, "als_topk"),
        "als_gram.npy": npy_bytes(als.gram.astype(np.float32)),
    }
    meta = {"als": {"alpha": als.factors.params.alpha}}
    graph = topk_graph(seq.vectors, 50, "seq_topk")
    blob_als = build_bundle(common, version=1, spec=default_spec(), metrics={}, models=meta, private_key=key)
    blob_seq = build_bundle(
        {**common, "seq_topk.onnx": graph}, version=2, spec=default_spec(), metrics={}, models=meta, private_key=key
    )
    del als, seq, data
    gc.collect()
    rss0 = rss_mb()
    m_als = BundleModels(open_bundle(blob_als, key.public_key()))
    rss1 = rss_mb()
    m_seq = BundleModels(open_bundle(blob_seq, key.public_key()))
    rss2 = rss_mb()
    rng = np.random.default_rng(7)
    n = len(catalog.items)
    sessions = [[catalog.items.ids[j] for j in rng.choice(n, size=8, replace=False)] for _ in range(calls)]
    timings: dict[str, list[float]] = {"als": [], "sequence": []}
    for _ in range(2):  # interleaved, twice: the second round is measured
        for name in timings:
            timings[name].clear()
            for s in sessions:
                t = time.perf_counter()
                if name == "als":
                    m_seq.recommend([(i, 1.0) for i in s], s)
                else:
                    m_seq.recommend_next(s, s)
                timings[name].append((time.perf_counter() - t) * 1e6)
    out = {
        "items": n,
        "interactions": int(catalog.popularity.sum()),
        "fit_als_s": round(fit_als_s, 2),
        "fit_sequence_s": round(fit_seq_s, 2),
        "bundle_bytes_als": len(blob_als),
        "bundle_bytes_with_sequence": len(blob_seq),
        "sequence_graph_bytes": len(graph),
        "rss_growth_mb_load_als": round(rss1 - rss0, 1),
        "rss_growth_mb_load_with_sequence": round(rss2 - rss1, 1),
        "decision_us_p50": {k: round(statistics.median(v), 1) for k, v in timings.items()},
        "decision_us_p99": {k: round(float(np.percentile(v, 99)), 1) for k, v in timings.items()},
    }
    del m_als
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    retail, texts = online_retail()
    runs = [
        run("online-retail-sample", retail, texts),
        run("chain-walks", chain_walks(a.users, chains=20, length=60, seed=1), {}),
    ]
    cost = edge_cost(a.calls)
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps({"bench": "sequence", "machine": machine, "runs": runs, "edge": cost}))


if __name__ == "__main__":
    main()
