"""Item-based recommenders (EASE, item-kNN) against ALS: accuracy and edge cost.

1. Accuracy on the standard per-item 75/25 protocol (``stratified-item`` split, NDCG@10,
   hyperparameters searched on a validation split carved from the training part, as
   ``p13n evaluate`` does): the Online Retail sample (real data, tests/fixtures/data)
   and a generated set shaped like MovieLens-100k (943 users, 1,682 items, 100k
   interactions, 19 taste groups; planted data, so its figures are not comparable with
   published MovieLens rows).
2. Edge cost at 20,000 items (item-kNN above EASE's bound): fit time, bundle bytes, and
   the per-session decision through :class:`models.bundle_runtime.BundleModels` for the
   ALS bundle and the item-based one (same sessions, same exclusions).

Usage: ``python tests/bench/item_models.py [--quick]``. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from retail_data import online_retail as retail_interactions

from hub.training.evaluate import evaluate
from models.als import ALSParams
from models.bundle import build_bundle, generate_key, load_private_key, npy_bytes, open_bundle
from models.bundle_runtime import BundleModels
from models.data import Interactions
from models.evaluation import split
from models.features import default_spec
from models.item_based import ItemParams
from models.onnx_graphs import neighbours_graph, topk_graph
from models.recommenders import ALS, Catalog, ItemBased
from models.synthetic import taste_groups


def online_retail() -> Interactions:
    """Customers × stock codes, one interaction per invoice line (tests/bench/retail_data.py)."""
    data: Interactions = retail_interactions()[0]
    return data


def movielens_shaped(seed: int) -> Interactions:
    data = taste_groups(943, 1682, 100_000, groups=19, in_group=0.6, seed=seed)
    return Interactions(data.users, data.items, np.ones(len(data), dtype=np.float32), data.timestamps)


def accuracy(name: str, data: Interactions, seed: int) -> dict[str, Any]:
    train, test = split(data, "stratified-item", 0.75, seed)
    started = time.perf_counter()
    report = evaluate(train, test, {}, 10, seed, stacked=True).report
    models = {m: round(v["ndcg"], 4) for m, v in report["models"].items()}
    chosen = report["chosen"]
    out = {
        "data": name,
        "users": len(set(data.users.tolist())),
        "items": len(set(data.items.tolist())),
        "interactions": len(data),
        "ndcg@10": models,
        "served": chosen["recommender"],
        "validation_ndcg@10": {k: round(v, 4) for k, v in chosen["validation"].items()},
        "item_params": chosen["items"],
        "als_params": chosen["als"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return out


def rss_mb() -> float:
    """Resident set size now (not the peak: training has already raised that)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def edge_cost(items: int, users: int, interactions: int, seed: int, calls: int) -> dict[str, Any]:
    data = taste_groups(users, items, interactions, groups=50, seed=seed)
    catalog = Catalog.build(data)
    t = time.perf_counter()
    item_model = ItemBased(catalog, data, ItemParams.for_catalog(items))
    fit_item_s = time.perf_counter() - t
    t = time.perf_counter()
    als = ALS(catalog, data, ALSParams(factors=64, iterations=10), seed)
    fit_als_s = time.perf_counter() - t
    key = load_private_key(generate_key()[0])
    spec = default_spec()
    ids = json.dumps({"ids": catalog.items.ids, "popularity": catalog.popularity.tolist()}).encode()
    common = {"items.json": ids, "als_topk.onnx": topk_graph(als.factors.item_factors, 50, "als_topk")}
    common["als_gram.npy"] = npy_bytes(als.gram.astype(np.float32))
    nb = item_model.neighbours
    graph = neighbours_graph(nb.index, nb.weight, 50, "item_topk")
    meta = {"als": {"alpha": als.factors.params.alpha}}
    blob_als = build_bundle(common, version=1, spec=spec, metrics={}, models=meta, private_key=key)
    blob_item = build_bundle(
        {**common, "item_topk.onnx": graph},
        version=2,
        spec=spec,
        metrics={},
        models={**meta, "recommender": "item", "item": nb.params.as_dict()},
        private_key=key,
    )
    del als, item_model, data
    gc.collect()
    rss0 = rss_mb()
    m_als = BundleModels(open_bundle(blob_als, key.public_key()))
    rss1 = rss_mb()
    m_item = BundleModels(open_bundle(blob_item, key.public_key()))
    rss2 = rss_mb()
    rng = np.random.default_rng(seed)
    n = len(catalog.items)
    sessions = [[(catalog.items.ids[j], 1.0) for j in rng.choice(n, size=8, replace=False)] for _ in range(calls)]
    timings: dict[str, list[float]] = {"als": [], m_item.session_model: []}
    for models in (m_als, m_item, m_als, m_item):  # interleaved, twice: warm caches for both
        lat = timings[models.session_model]
        for s in sessions:
            t = time.perf_counter()
            models.recommend(s, [i for i, _ in s])
            lat.append((time.perf_counter() - t) * 1e6)
    out = {
        "items": items,
        "interactions": interactions,
        "item_kind": nb.params.kind,
        "fit_item_s": round(fit_item_s, 2),
        "fit_als_s": round(fit_als_s, 2),
        "bundle_bytes_als": len(blob_als),
        "bundle_bytes_item": len(blob_item),
        "item_graph_bytes": len(graph),
        "rss_growth_mb_als_load": round(rss1 - rss0, 1),
        "rss_growth_mb_item_load": round(rss2 - rss1, 1),
        "decision_us_p50": {k: round(statistics.median(v[calls:]), 1) for k, v in timings.items()},
        "decision_us_p99": {k: round(float(np.percentile(v[calls:], 99)), 1) for k, v in timings.items()},
    }
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller edge-cost run")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    result = {
        "online_retail": accuracy("online-retail-sample", online_retail(), a.seed),
        "movielens_shaped": accuracy("generated, MovieLens-100k shape", movielens_shaped(a.seed), a.seed),
        "edge": edge_cost(
            5_000 if a.quick else 20_000, 10_000 if a.quick else 50_000, 100_000 if a.quick else 1_000_000, a.seed, 2000
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
