"""The cold-start protocol (models/cold_start.py) and the sentence encoder's cost.

A fifth of the items held out of all training; recall@10 of the content model (TF-IDF
over item text), the semantic model (all-MiniLM-L6-v2 vectors of the same text) and
their mix ranking them for the users who later interacted with them, against a seeded
random ranking — on the Online Retail sample (real stock descriptions), a generated
catalog whose titles carry the planted taste groups as made-up words, and the same
catalog titled in plain English (each group a theme named with different words).

The semantic model's recall at 384, 192, 128, 64 and 32 dimensions on the Online Retail
split. Then what the semantic model costs: encoding throughput (items/s) on this machine, and
at the edge, a 20,000-item catalog with and without the semantic vectors: bundle bytes,
the memory to load each, and the decision time of an 8-item session through ALS
fold-in and through the vectors. Needs the encoder installed (`p13n encoder install`).

    python tests/bench/cold_start.py [--calls 2000]

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

from hub.training.evaluate import evaluate_cold_start  # noqa: E402
from models.als import ALSParams  # noqa: E402
from models.data import Interactions, Item  # noqa: E402
from models.recommenders import ALS, Catalog  # noqa: E402
from models.semantic import item_vectors  # noqa: E402
from models.sentence_encoder import SentenceEncoder, load  # noqa: E402
from models.synthetic import described_items, taste_groups, themed_items  # noqa: E402


def run(name: str, data: Interactions, items: dict[str, Item], encoder: SentenceEncoder) -> dict[str, Any]:
    started = time.perf_counter()
    report = evaluate_cold_start(data, items, 10, 42, encoder=encoder).report
    out = {
        "data": name,
        "interactions": len(data),
        "cold_items": report["cold_items"],
        "users": report["users"],
        "recall@10": {m: round(r["recall"], 4) for m, r in report["models"].items()},
        "expected_random_recall@10": round(report["expected_random_recall"], 4),
        "encoding": report["encoding"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(out))
    return out


def dims_sweep(data: Interactions, items: dict[str, Item], encoder: SentenceEncoder) -> dict[str, float]:
    """The semantic model's recall@10 on the same split with its vectors cut to fewer
    dimensions (a centred PCA; 384 keeps them all, after centring)."""
    out = {}
    for dims in (384, 192, 128, 64, 32):
        report = evaluate_cold_start(data, items, 10, 42, encoder=encoder, semantic_dims=dims).report
        out[str(dims)] = round(report["models"]["semantic"]["recall"], 4)
    print(json.dumps({"dims_sweep": out}))
    return out


def throughput(encoder: SentenceEncoder, name: str, texts: list[str]) -> dict[str, Any]:
    encoder.encode(texts[:64])  # warm
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    tokens = sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts)) / len(texts)
    out = {"texts": name, "items": len(texts), "mean_tokens": round(tokens, 1), "seconds": round(seconds, 2),
           "items_per_s": round(len(texts) / seconds, 1)}  # fmt: skip
    print(json.dumps(out))
    return out


def edge_cost(encoder: SentenceEncoder, calls: int) -> dict[str, Any]:
    n = 20_000
    data = taste_groups(40_000, n, 240_000, groups=10, seed=7)
    items = themed_items(n, 10, seed=7)
    catalog = Catalog.build(data, list(items))
    t = time.perf_counter()
    als = ALS(catalog, data, ALSParams(factors=64, iterations=10), 7)
    fit_als_s = time.perf_counter() - t
    t = time.perf_counter()
    vectors = item_vectors(encoder, catalog.items.ids, items)
    encode_s = time.perf_counter() - t
    out = {
        "interactions": len(data),
        "fit_als_s": round(fit_als_s, 2),
        "encode_s": round(encode_s, 2),
        **vector_model_cost(catalog, als, "semantic", vectors, calls),
    }
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    encoder = load()
    retail, texts = online_retail()
    runs = [
        run("online-retail-sample", retail, texts, encoder),
        run("planted-text", taste_groups(2000, 600, 40_000, groups=10, seed=3), described_items(600, 10, seed=3), encoder),
        run("themed-text", taste_groups(2000, 600, 40_000, groups=10, seed=3), themed_items(600, 10, seed=3), encoder),
    ]
    sweep = dims_sweep(retail, texts, encoder)
    speed = [
        throughput(encoder, "online-retail descriptions", [i.text for i in texts.values()]),
        throughput(encoder, "themed titles", [i.text for i in themed_items(5000, 10, seed=1).values()]),
    ]
    cost = edge_cost(encoder, a.calls)
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        json.dumps(
            {
                "bench": "cold_start",
                "machine": machine,
                "runs": runs,
                "semantic_dims_recall@10": sweep,
                "encoding": speed,
                "edge": cost,
            }
        )
    )


if __name__ == "__main__":
    main()
