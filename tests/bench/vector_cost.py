"""What a slot model with item vectors of its own (``sequence``, ``semantic``) costs an
edge: a bundle with ALS alone and one with the model's top-k graph too, the memory to
load each, and the decision time of a session through ALS fold-in and through the
vectors (interleaved, the second of two rounds measured). Shared by
tests/bench/sequence.py and tests/bench/cold_start.py."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import build_bundle, generate_key, load_private_key, npy_bytes, open_bundle
from models.bundle_runtime import VECTOR_MODELS, BundleModels
from models.features import default_spec
from models.onnx_graphs import topk_graph
from models.recommenders import ALS, Catalog


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


#: Run in a fresh interpreter: the memory one bundle's models take, loaded the edge's way
#: (edge_agent.model_runtime, after a first bundle warmed the libraries, so their own
#: memory is not counted).
_LOAD = """
import sys
import edge_agent.model_runtime as runtime
from models.onnx_runtime import TopKModel, topk_embeddings
sys.path.insert(0, sys.argv[1])
from vector_cost import rss_mb
if sys.argv[5] == "copies":  # as before 2026-12-05: a session copy and a read-out copy, no trim
    TopKModel.with_embeddings = classmethod(lambda cls, data: (cls(data), topk_embeddings(data)))
    runtime.release_free_memory = lambda: None
load_models = runtime.load_models
warm = load_models(sys.argv[3], sys.argv[2], 0)
before = rss_mb()
models = load_models(sys.argv[4], sys.argv[2], 0)
print(rss_mb() - before)
"""


def load_rss_mb(public_key: bytes, warm: bytes, blob: bytes, how: str = "edge") -> float:
    """RSS growth (MB) of loading ``blob`` in a fresh process after ``warm``; ``how``:
    "edge" (today's loading) or "copies" (the loading before one copy and the trim)."""
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / n for n in ("key.pub", "warm.tar", "bundle.tar")]
        for path, data in zip(paths, (public_key, warm, blob), strict=True):
            path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-c", _LOAD, str(Path(__file__).parent), *map(str, paths), how],
            capture_output=True, text=True, check=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def vector_model_cost(catalog: Catalog, als: ALS, model: str, vectors: np.ndarray, calls: int) -> dict[str, Any]:
    """Bundle bytes, load memory and decision times (µs) of ``model``'s vectors next to ALS."""
    private, public = generate_key()
    key = load_private_key(private)
    common = {
        "items.json": json.dumps({"ids": catalog.items.ids, "popularity": catalog.popularity.tolist()}).encode(),
        "als_topk.onnx": topk_graph(als.factors.item_factors, 50, "als_topk"),
        "als_gram.npy": npy_bytes(als.gram.astype(np.float32)),
    }
    meta = {"als": {"alpha": als.factors.params.alpha}}
    member = VECTOR_MODELS[model]
    graph = topk_graph(vectors, 50, member.removesuffix(".onnx"))
    blob_als = build_bundle(common, version=1, spec=default_spec(), metrics={}, models=meta, private_key=key)
    blob_with = build_bundle({**common, member: graph}, version=2, spec=default_spec(), metrics={}, models=meta, private_key=key)
    warm = build_bundle(common, version=3, spec=default_spec(), metrics={}, models=meta, private_key=key)
    load_als = load_rss_mb(public, warm, blob_als)
    load_with = load_rss_mb(public, warm, blob_with)
    before = {"als": load_rss_mb(public, warm, blob_als, "copies"), model: load_rss_mb(public, warm, blob_with, "copies")}
    m_with = BundleModels(open_bundle(blob_with, key.public_key()))
    rng = np.random.default_rng(7)
    n = len(catalog.items)
    sessions = [[catalog.items.ids[j] for j in rng.choice(n, size=8, replace=False)] for _ in range(calls)]
    timings: dict[str, list[float]] = {"als": [], model: []}
    for _ in range(2):  # interleaved, twice: the second round is measured
        for name in timings:
            timings[name].clear()
            for s in sessions:
                t = time.perf_counter()
                if name == "als":
                    m_with.recommend([(i, 1.0) for i in s], s)
                else:
                    m_with.recommend_next(s, s, model)
                timings[name].append((time.perf_counter() - t) * 1e6)
    return {
        "items": n,
        "dims": int(vectors.shape[1]),
        "bundle_bytes_als": len(blob_als),
        f"bundle_bytes_with_{model}": len(blob_with),
        f"{model}_graph_bytes": len(graph),
        "rss_growth_mb_load_als": load_als,
        f"rss_growth_mb_load_with_{model}": load_with,
        # the same two loads as before one shared copy of the embeddings and the trim
        "rss_growth_mb_before_sharing": before,
        "decision_us_p50": {k: round(statistics.median(v), 1) for k, v in timings.items()},
        "decision_us_p99": {k: round(float(np.percentile(v, 99)), 1) for k, v in timings.items()},
    }
