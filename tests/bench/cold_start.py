"""The cold-start protocol (models/cold_start.py): a fifth of the items held out of all
training; recall@10 of the content model (TF-IDF over item text) ranking them for the
users who later interacted with them, against a seeded random ranking — on the Online
Retail sample (real stock descriptions) and on a generated catalog whose titles carry
the planted taste groups.

    python tests/bench/cold_start.py

Last line: one JSON object.
"""

from __future__ import annotations

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

from hub.training.evaluate import evaluate_cold_start  # noqa: E402
from models.data import Interactions, Item  # noqa: E402
from models.synthetic import described_items, taste_groups  # noqa: E402


def run(name: str, data: Interactions, items: dict[str, Item]) -> dict[str, Any]:
    started = time.perf_counter()
    report = evaluate_cold_start(data, items, 10, 42).report
    out = {
        "data": name,
        "interactions": len(data),
        "cold_items": report["cold_items"],
        "users": report["users"],
        "recall@10": {m: round(r["recall"], 4) for m, r in report["models"].items()},
        "expected_random_recall@10": round(report["expected_random_recall"], 4),
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(out))
    return out


def main() -> None:
    retail, texts = online_retail()
    runs = [
        run("online-retail-sample", retail, texts),
        run("planted-text", taste_groups(2000, 600, 40_000, groups=10, seed=3), described_items(600, 10, seed=3)),
    ]
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps({"bench": "cold_start", "machine": machine, "runs": runs}))


if __name__ == "__main__":
    main()
