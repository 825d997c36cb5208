"""The next-item protocol (models/next_item.py) on real and planted data: popularity,
ALS, the hybrid (ALS + content) and the sequence model (Word2Vec over sessions) rank
each user's latest item from what came before. Hit rate@10, MRR@10 and fit times.

- Online Retail sample (tests/fixtures/data: real invoices, sparse; items described by
  their stock descriptions for the content side of the hybrid);
- planted chains (models.synthetic.chain_walks: 5,000 visitors walking 20 chains of 60
  items in order, 10 % random steps).

    python tests/bench/sequence.py [--users 5000]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub.training.evaluate import evaluate_next_item  # noqa: E402
from models.data import Interactions, Item  # noqa: E402
from models.synthetic import chain_walks  # noqa: E402

RETAIL = REPO / "tests" / "fixtures" / "data" / "online-retail-sample.csv"


def online_retail() -> tuple[Interactions, dict[str, Item]]:
    """Customers × stock codes, one interaction per invoice line, in invoice time; the
    stock descriptions as item text."""
    users, items, stamps = [], [], []
    text: dict[str, str] = {}
    with RETAIL.open(encoding="latin-1") as f:
        for row in csv.DictReader(f):
            if not row["CustomerID"] or float(row["Quantity"]) <= 0:
                continue
            users.append(row["CustomerID"])
            items.append(row["StockCode"])
            stamps.append(datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").timestamp())
            text[row["StockCode"]] = row["Description"]
    n = len(users)
    data = Interactions(
        np.array(users, dtype=object), np.array(items, dtype=object), np.ones(n, dtype=np.float32), np.array(stamps)
    )
    return data, {i: Item(i, t) for i, t in text.items()}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    a = ap.parse_args()
    retail, texts = online_retail()
    runs = [
        run("online-retail-sample", retail, texts),
        run("chain-walks", chain_walks(a.users, chains=20, length=60, seed=1), {}),
    ]
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps({"bench": "sequence", "machine": machine, "runs": runs}))


if __name__ == "__main__":
    main()
