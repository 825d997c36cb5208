"""Training benchmark: 1M interactions, 50k visitors, 20k items (generated, planted).

Times each phase of what ``p13n train`` does — tuning on a validation split, final ALS
and content fits, clustering 50k visitor profiles (k by silhouette), ONNX export,
signing — then per-row inference as the edge runs it: segment ONNX on one feature
vector, fold-in of an anonymous session, and top-10 of 20k items through the ALS ONNX
graph. Prints a table; the last line is one JSON object.

    python tests/bench/train.py [--interactions 1000000] [--users 50000] [--items 20000] [--no-tune]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from models import clusters, text_model  # noqa: E402
from models.als import ALSParams  # noqa: E402
from models.bundle import build_bundle, generate_key, load_private_key, load_public_key, npy_bytes, open_bundle  # noqa: E402
from models.data import Item  # noqa: E402
from models.features import default_spec, encode, encode_many  # noqa: E402
from models.onnx_graphs import topk_graph  # noqa: E402
from models.onnx_runtime import OnnxModel, TopKModel, topk_embeddings  # noqa: E402
from models.recommenders import ALS, Catalog, Content  # noqa: E402
from models.synthetic import taste_groups, visitor_archetypes  # noqa: E402
from models.tuning import tune  # noqa: E402

WORDS = [
    "linen",
    "wool",
    "silk",
    "cotton",
    "denim",
    "leather",
    "suede",
    "knit",
    "satin",
    "canvas",
    "dress",
    "coat",
    "boot",
    "scarf",
    "belt",
    "shirt",
    "skirt",
    "blazer",
    "sneaker",
    "sandal",
    "tote",
    "hat",
]


def item_texts(n: int, seed: int) -> dict[str, Item]:
    rng = np.random.default_rng(seed)
    out = {}
    for j in range(n):
        words = rng.choice(WORDS, size=4)
        out[f"i{j}"] = Item(f"i{j}", " ".join(words[:2]), " ".join(words), "", "")
    return out


def percentile_us(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--no-tune", action="store_true", help="skip tuning (fixed ALS parameters)")
    ap.add_argument("--rows", type=int, default=3000, help="inference rows to time")
    args = ap.parse_args()
    phases: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        result = fn()
        phases[name] = round(time.perf_counter() - t, 3)
        print(f"{name:<22} {phases[name]:>8.2f} s", flush=True)
        return result

    data = taste_groups(args.users, args.items, args.interactions, groups=50, seed=1)
    items = item_texts(args.items, 2)
    profiles, _ = visitor_archetypes(args.users, k=5, seed=3)
    start = time.perf_counter()
    params = ALSParams(64, 0.05, 10.0, 15)
    if not args.no_tune:
        tuned = timed("tune", lambda: tune(data, items, 10, 42))
        params = ALSParams(64, tuned.als.regularization, tuned.als.alpha, tuned.als.iterations)  # edge budget: 64 factors
    catalog = timed("catalog", lambda: Catalog.build(data, list(items)))
    als = timed("als_fit", lambda: ALS(catalog, data, params))
    content = timed("content_fit", lambda: Content(catalog, items))
    spec = default_spec()
    x = encode_many(spec, profiles)
    seg = timed("segments_fit", lambda: clusters.fit_segments(x, spec.columns(), seed=1))
    files = timed(
        "onnx_export",
        lambda: {
            "segments.onnx": clusters.to_onnx(seg.pipeline, spec.width),
            "als_topk.onnx": topk_graph(als.factors.item_factors, 50),
            "als_gram.npy": npy_bytes(als.gram.astype(np.float32)),
            "content_topk.onnx": topk_graph(content.model.item_vectors, 50),
            "text.onnx": text_model.to_onnx(content.model),
        },
    )
    private, public = generate_key()
    blob = timed(
        "sign", lambda: build_bundle(files, version=1, spec=spec, metrics={}, models={}, private_key=load_private_key(private))
    )
    total = time.perf_counter() - start
    bundle = timed("verify_open", lambda: open_bundle(blob, load_public_key(public)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # per-row inference, as the edge does it
    seg_model = OnnxModel(bundle.files["segments.onnx"])
    topk = TopKModel(topk_graph(als.factors.item_factors, 10))
    y = topk_embeddings(bundle.files["als_topk.onnx"])  # what the edge reads
    gram = bundle.array("als_gram.npy").astype(np.float64)
    rng = np.random.default_rng(4)
    vec = np.zeros((1, spec.width), dtype=np.float32)
    seg_t, fold_t, topk_t, total_t = [], [], [], []
    for r in range(args.rows):
        attrs = profiles[r % len(profiles)]
        session = rng.integers(0, args.items, 5)
        t0 = time.perf_counter()
        encode(spec, attrs, vec[0])
        seg_model.run({"features": vec})
        t1 = time.perf_counter()
        user = als.fold_in(session, np.ones(5, dtype=np.float32)) if r % 2 else als.factors.user_factors[r % len(catalog.users)]
        t2 = time.perf_counter()
        topk.top(user, session)
        t3 = time.perf_counter()
        seg_t.append(t1 - t0)
        fold_t.append(t2 - t1) if r % 2 else None
        topk_t.append(t3 - t2)
        total_t.append(t3 - t0)
    del y, gram
    summary = {
        "bench": "train",
        "interactions": args.interactions,
        "users": args.users,
        "items": args.items,
        "tuned": not args.no_tune,
        "train_export_s": round(total, 2),
        **{f"{k}_s": v for k, v in phases.items()},
        "peak_rss_mb": round(peak_mb, 1),
        "bundle_bytes": len(blob),
        "segments": {"kind": seg.kind, "k": seg.k},
        "segment_p50_us": round(percentile_us(seg_t, 50), 1),
        "fold_in_p50_us": round(percentile_us(fold_t, 50), 1),
        "fold_in_p99_us": round(percentile_us(fold_t, 99), 1),
        "topk_p50_us": round(percentile_us(topk_t, 50), 1),
        "row_total_p50_us": round(percentile_us(total_t, 50), 1),
        "row_total_p99_us": round(percentile_us(total_t, 99), 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(
        f"train+export {total:.1f} s, peak RSS {peak_mb:.0f} MB; per row: segment {summary['segment_p50_us']} µs, "
        f"fold-in {summary['fold_in_p50_us']} µs, top-10/{args.items} {summary['topk_p50_us']} µs, total p50 {summary['row_total_p50_us']} µs"
    )
    with tempfile.TemporaryDirectory():
        pass
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
