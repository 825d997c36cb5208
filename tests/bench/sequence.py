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
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from retail_data import online_retail  # noqa: E402  (tests/bench/retail_data.py)
from vector_cost import vector_model_cost  # noqa: E402  (tests/bench/vector_cost.py)

from hub.training.evaluate import evaluate_next_item  # noqa: E402
from models.als import ALSParams  # noqa: E402
from models.data import Interactions, Item  # noqa: E402
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


def edge_cost(calls: int) -> dict[str, Any]:
    data = chain_walks(40_000, chains=400, length=50, seed=7)
    catalog = Catalog.build(data)
    t = time.perf_counter()
    als = ALS(catalog, data, ALSParams(factors=64, iterations=10), 7)
    fit_als_s = time.perf_counter() - t
    t = time.perf_counter()
    seq = SequenceModel(catalog, data, SequenceParams(), 7)
    fit_seq_s = time.perf_counter() - t
    out = {
        "interactions": int(catalog.popularity.sum()),
        "fit_als_s": round(fit_als_s, 2),
        "fit_sequence_s": round(fit_seq_s, 2),
        **vector_model_cost(catalog, als, "sequence", seq.vectors, calls),
    }
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
