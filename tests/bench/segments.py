"""Segment models side by side: KMeans, GaussianMixture and DBSCAN on planted visitor
archetypes (``--profiles`` rows, 4 archetypes): fit time, what each finds (k, adjusted
Rand index against the planted groups, silhouette; DBSCAN's eps, noise share and core
samples), the exported graph's size in the bundle, and the edge's cost to segment one
visitor (median and p99 of ``--calls`` single-row runs, as ``BundleModels.segment``
runs it, encoding included).

    python tests/bench/segments.py [--profiles 3000 20000] [--calls 5000]

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

import numpy as np
from sklearn.metrics import adjusted_rand_score

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from models.clusters import export, fit_segments  # noqa: E402
from models.features import default_spec, encode, encode_many  # noqa: E402
from models.onnx_runtime import OnnxModel  # noqa: E402
from models.synthetic import visitor_archetypes  # noqa: E402


def edge_cost(graph: bytes, rows: list[dict[str, Any]], width: int, calls: int) -> dict[str, float]:
    spec = default_spec()
    model = OnnxModel(graph)
    vec = np.zeros((1, width), dtype=np.float32)
    times = []
    for n in range(calls):
        start = time.perf_counter()
        encode(spec, rows[n % len(rows)], vec[0])
        model.run({"features": vec})
        times.append(time.perf_counter() - start)
    us = np.array(times) * 1e6
    return {"p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, nargs="+", default=[3000, 20000])
    ap.add_argument("--calls", type=int, default=5000)
    a = ap.parse_args()
    spec = default_spec()
    runs = []
    for n in a.profiles:
        rows, truth = visitor_archetypes(n, k=4, seed=5)
        x = encode_many(spec, rows)
        for kind in ("kmeans", "gmm", "dbscan"):
            start = time.perf_counter()
            result = fit_segments(x, spec.columns(), kinds=(kind,), seed=1)
            fit_s = time.perf_counter() - start
            graph = export(result, spec.width)
            labels = np.asarray(OnnxModel(graph).run({"features": x})[0]).reshape(-1)
            kept = labels >= 0
            run: dict[str, Any] = {
                "profiles": n,
                "kind": kind,
                "fit_s": round(fit_s, 2),
                "k": result.k,
                "ari": round(float(adjusted_rand_score(truth[kept], labels[kept])), 3),
                "silhouette": round(max(result.silhouette[kind].values()), 3),
                "graph_bytes": len(graph),
                **edge_cost(graph, rows, spec.width, a.calls),
            }
            if result.density is not None:
                d = result.density
                run |= {"eps": round(d.eps, 4), "noise_share": round(d.noise_share, 4), "core_samples": len(d.cores)}
            print(run)
            runs.append(run)
    print(
        json.dumps(
            {
                "bench": "segments",
                "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
