"""``p13n train``: segments + recommenders → ONNX → a signed bundle and a report.

Steps (each logged as progress): load data; hold out a test split and tune on a
validation split carved from the rest; score every model on the holdout (these
metrics go into the manifest and the report); refit on all data; cluster visitor
profiles (k by silhouette); export ONNX; sign and write ``bundle-vN.tar``,
``report-vN.json`` and ``report-vN.html``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hub.training.evaluate import evaluate
from hub.training.from_hub import HubData
from models import clusters, text_model
from models.bundle import build_bundle, load_private_key, npy_bytes
from models.content import build_content, wants_model
from models.data import Interactions, Item, load_interactions, load_items
from models.evaluation import split
from models.features import FeatureSpec, default_spec, encode_many
from models.onnx_graphs import neighbours_graph, topk_graph
from models.recommenders import ALS, Catalog, Content, ItemBased
from models.sequence import SequenceModel, SequenceParams
from models.synthetic import taste_groups, visitor_archetypes
from models.tuning import Tuned, select, tune

log = logging.getLogger(__name__)

#: Longest list a top-k graph returns; slots ask for fewer.
MAX_K = 50
Progress = Callable[[str], None]


@dataclass
class TrainConfig:
    out_dir: Path
    key_file: Path
    interactions: Path | None = None
    items: Path | None = None
    profiles: Path | None = None
    templates: Path | None = None
    generate: bool = False
    k: int = 10
    seed: int = 42
    cluster_labels: Mapping[str, str] = field(default_factory=dict)
    #: clusterings tried for segments (models.clusters.ALL_KINDS; the best silhouette wins)
    segment_kinds: Sequence[str] = ("kmeans", "gmm")
    event_weights: Mapping[str, float] | None = None
    #: False: skip the validation search and use default hyperparameters (quick runs)
    tune: bool = True
    #: Interactions, items and profiles read from the hub's warehouse (``--from-hub``):
    #: used instead of the files or generated data
    hub_data: HubData | None = None
    #: Hyperparameters found by an earlier run on the same data (no search this time)
    tuned: Tuned | None = None
    #: Slot definitions and catalog to ship when no ``templates`` are given (the live
    #: bundle's, carried over by the hub's training runs)
    content_doc: dict[str, Any] | None = None
    #: Score every model on a random 25 % holdout (off in the hub's runs: the gate
    #: scores on the time holdout instead); ``metrics`` then go into the manifest
    evaluate: bool = True
    metrics: dict[str, Any] | None = None
    #: The bundle's version (None: one more than the highest in ``out_dir``). Versions
    #: are unique per hub: ``p13n bundle list`` names the next free one.
    version: int | None = None
    #: The sentence encoder's directory, for ``"model": "semantic"`` slots (None: where
    #: ``p13n encoder install`` puts it)
    encoder: Path | None = None


@dataclass
class TrainResult:
    bundle_path: Path
    report_path: Path
    html_path: Path
    version: int
    report: dict[str, Any]
    tuned: Tuned | None = None


def next_version(out_dir: Path) -> int:
    """One more than the highest ``bundle-vN.tar`` in ``out_dir`` (versions only grow)."""
    found = [int(m.group(1)) for p in out_dir.glob("bundle-v*.tar") if (m := re.match(r"bundle-v(\d+)\.tar$", p.name))]
    return max(found, default=0) + 1


def profiles_from_interactions(data: Interactions, items: Mapping[str, Item]) -> list[dict[str, Any]]:
    """Per-user behaviour attributes for clustering when no profile file is given."""
    by_user: dict[str, dict[str, Any]] = {}
    for u, i, w, t in zip(data.users, data.items, data.weights, data.timestamps, strict=True):
        p = by_user.setdefault(u, {"views": 0, "carts": 0, "purchases": 0, "category_views": Counter(), "hours": []})
        p["views"] += 1
        p["carts"] += int(w == 4.0)
        p["purchases"] += int(w == 8.0)
        item = items.get(i)
        if item is not None and item.category:
            p["category_views"][item.category] += 1
        if not np.isnan(t):
            p["hours"].append(datetime.fromtimestamp(float(t), UTC).hour)
    out = []
    for p in by_user.values():
        hours = p.pop("hours")
        if hours:
            p["hour"] = int(np.median(hours))
        out.append(p)
    return out


def _segments_meta(seg: clusters.ClusterResult | None) -> dict[str, Any]:
    if seg is None:
        return {"kind": "none", "k": 0, "labels": [], "sizes": [], "silhouette": {}}
    out: dict[str, Any] = {
        "kind": seg.kind,
        "k": seg.k,
        "labels": seg.labels,
        "sizes": seg.sizes,
        "silhouette": {kd: {str(k): v for k, v in c.items()} for kd, c in seg.silhouette.items()},
        "inertia": {str(k): v for k, v in seg.inertia.items()},
    }
    d = seg.density
    if d is not None:
        step = max(1, len(d.k_distances) // 200)  # the curve, thinned for the report
        out["dbscan"] = {
            "eps": d.eps,
            "min_samples": d.min_samples,
            "clusters": d.k,
            "core_samples": len(d.cores),
            "fitted_rows": len(d.rows),
            "noise_share": d.noise_share,
            "silhouette_non_noise": d.silhouette,
            "score": d.score,
            "k_distances": [float(v) for v in d.k_distances[::step]],
        }
    return out


def _load(
    config: TrainConfig, say: Progress
) -> tuple[Interactions, dict[str, Item], list[dict[str, Any]], dict[str, Any] | None]:
    content_doc = build_content(config.templates) if config.templates else config.content_doc
    catalog_items: dict[str, Item] = {}
    if content_doc:
        for it in content_doc["catalog"]:
            catalog_items[it["id"]] = Item(
                it["id"], it.get("title", ""), it.get("description", ""), " ".join(it.get("tags", [])), it.get("category", "")
            )
    if config.items:
        catalog_items.update({i.id: i for i in load_items(config.items)})
    if config.hub_data is not None:
        data = config.hub_data.interactions
        catalog_items = {**config.hub_data.items, **catalog_items}
        profiles = list(config.hub_data.profiles)
    elif config.generate:
        ids = sorted(catalog_items) or None
        say(f"generating interactions over {len(ids) if ids else 1000} items")
        data = taste_groups(2000, 1000, 40_000, groups=4 if ids else 20, seed=config.seed, item_ids=ids)
        profiles, _ = visitor_archetypes(3000, k=4, seed=config.seed)
    elif config.interactions:
        data = load_interactions(config.interactions, config.event_weights)
        profiles = []
    else:
        raise ValueError("give --interactions FILE or --generate")
    if config.profiles:
        profiles = [json.loads(line) for line in config.profiles.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif not profiles:
        profiles = profiles_from_interactions(data, catalog_items)
    return data, catalog_items, profiles, content_doc


def run_training(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    started = time.perf_counter()
    say = progress or (lambda m: log.info("%s", m))
    config.out_dir.mkdir(parents=True, exist_ok=True)
    key = load_private_key(config.key_file.read_bytes())
    data, items, profiles, content_doc = _load(config, say)
    say(f"loaded {len(data)} interactions, {len(items)} catalog items, {len(profiles)} profiles")

    # the random split serves the search and the offline evaluation only
    searching = config.tuned is None and config.tune
    train, test = split(data, "random", 0.75, config.seed) if searching or config.evaluate else (data, data)
    if config.tuned is not None:
        tuned = config.tuned
        say("hyperparameters from the gated run")
    elif searching:
        tuned = tune(train, items, config.k, config.seed, progress=say)
    else:
        say("search skipped: default hyperparameters, the served model chosen on validation")
        tuned = select(data, items, config.k, config.seed, progress=say)
    if config.evaluate:
        evaluation_report = evaluate(train, test, items, config.k, config.seed, progress=say, tuned=tuned).report
        metrics = evaluation_report["models"]
    else:
        say("offline evaluation skipped: the gate scores the model on the time holdout")
        metrics = dict(config.metrics or {})
        evaluation_report = {
            "k": config.k,
            "test_users": 0,
            "models": {},
            "chosen": tuned.chosen(),
            "skipped": "scored by the training gate on the most recent days instead (see the run's gate)",
        }

    say("refitting on all data")
    catalog = Catalog.build(data, list(items))
    als = ALS(catalog, data, tuned.als, config.seed)
    content = Content(catalog, items, seed=config.seed)
    item_model = ItemBased(catalog, data, tuned.items) if tuned.recommender == "item" else None

    categories: Sequence[str] = sorted({i.category for i in items.values() if i.category}) or default_spec().features[-1].values
    spec: FeatureSpec = default_spec(categories)
    say(f"clustering {len(profiles)} profiles on {spec.width} features")
    x = encode_many(spec, profiles)
    seg: clusters.ClusterResult | None = None
    try:
        seg = clusters.fit_segments(
            x, spec.columns(), kinds=config.segment_kinds, seed=config.seed, label_overrides=config.cluster_labels
        )
        say(f"segments: {seg.kind} k={seg.k} labels={seg.labels}")
    except ValueError as e:  # a young site: every visitor alike so far
        say(f"segments: none ({e}); the bundle ships without a segment model")

    say("exporting ONNX")
    files: dict[str, bytes] = {
        "als_topk.onnx": topk_graph(als.factors.item_factors, MAX_K, "als_topk"),
        "als_gram.npy": npy_bytes(als.gram.astype(np.float32)),
        "content_topk.onnx": topk_graph(content.model.item_vectors, MAX_K, "content_topk"),
        "text.onnx": text_model.to_onnx(content.model),
        "items.json": json.dumps({"ids": catalog.items.ids, "popularity": catalog.popularity.tolist()}).encode(),
    }
    if item_model is not None:
        nb = item_model.neighbours
        files["item_topk.onnx"] = neighbours_graph(nb.index, nb.weight, MAX_K, "item_topk")
    if seg is not None:
        files["segments.onnx"] = clusters.export(seg, spec.width)
    sequence_meta: dict[str, Any] = {}
    if content_doc is not None and wants_model(content_doc, "sequence"):
        say("learning sequence vectors (a slot ranks with them)")
        params = SequenceParams()
        seq = SequenceModel(catalog, data, params, config.seed)
        known = int((np.abs(seq.vectors).sum(axis=1) > 0).sum())
        if known:
            files["seq_topk.onnx"] = topk_graph(seq.vectors, MAX_K, "seq_topk")
        sequence_meta = {**params.as_dict(), "items_with_vectors": known}
    semantic_meta: dict[str, Any] = {}
    if content_doc is not None and wants_model(content_doc, "semantic"):
        semantic_meta = _semantic_vectors(config, catalog, items, files, say)
    if content_doc is not None:
        files["content.json"] = json.dumps(content_doc, sort_keys=True).encode()
    version = config.version if config.version is not None else next_version(config.out_dir)
    models_meta = {
        "als": {**tuned.als.as_dict(), "items": len(catalog.items)},
        "hybrid": tuned.blend.as_dict(),
        # what the edge recommends sessions with; known users without a session keep
        # their ALS factors
        "recommender": tuned.recommender,
        "item": {**tuned.items.as_dict(), "validation": tuned.validation},
        "segments": _segments_meta(seg),
        "content": {"dims": content.model.dims},
        "max_k": MAX_K,
        **({"sequence": sequence_meta} if sequence_meta else {}),
        **({"semantic": semantic_meta} if semantic_meta else {}),
    }
    # known users' factors stay out of the bundle (per-user data): the hub publishes them
    # with each consented profile (P13N_HUB_USER_FACTORS points at this file)
    factors_path = config.out_dir / f"user-factors-v{version}.npz"
    with factors_path.open("wb") as f:
        np.savez(f, ids=np.array(catalog.users.ids, dtype=str), factors=als.factors.user_factors)
    say(f"signing bundle v{version}")
    blob = build_bundle(files, version=version, spec=spec, metrics=metrics, models=models_meta, private_key=key)
    bundle_path = config.out_dir / f"bundle-v{version}.tar"
    tmp = bundle_path.with_suffix(".tar.tmp")
    tmp.write_bytes(blob)
    tmp.replace(bundle_path)

    report = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "bundle": bundle_path.name,
        "bundle_bytes": len(blob),
        "evaluation": evaluation_report,
        "segments": models_meta["segments"],
        "feature_spec_hash": spec.hash(),
    }
    report_path = config.out_dir / f"report-v{version}.json"
    report_path.write_text(json.dumps(report, indent=1))
    from hub.training.report import write_html

    html_path = config.out_dir / f"report-v{version}.html"
    write_html(report, html_path)
    say(f"wrote {bundle_path} ({len(blob)} bytes), {report_path.name}, {html_path.name}")
    return TrainResult(bundle_path, report_path, html_path, version, report, tuned)


def _semantic_vectors(
    config: TrainConfig, catalog: Catalog, items: Mapping[str, Item], files: dict[str, bytes], say: Progress
) -> dict[str, Any]:
    """Embed the catalog's text for ``"model": "semantic"`` slots into ``sem_topk.onnx``;
    without an installed encoder the bundle ships without them (those slots then rank
    with the session model) and the manifest says why."""
    from models.semantic import item_vectors
    from models.sentence_encoder import NAME, EncoderUnavailable, load

    try:
        encoder = load(config.encoder)
    except (EncoderUnavailable, ImportError) as e:
        say(f"semantic vectors NOT built (a slot asks for them): {e}")
        log.warning("semantic vectors not built: %s", e)
        return {"skipped": str(e)}
    say(f"embedding {len(catalog.items)} item texts ({NAME}; a slot ranks with them)")
    started = time.perf_counter()
    vectors = item_vectors(encoder, catalog.items.ids, items)
    seconds = time.perf_counter() - started
    known = int((np.abs(vectors).sum(axis=1) > 0).sum())
    if known:
        files["sem_topk.onnx"] = topk_graph(vectors, MAX_K, "sem_topk")
    return {"encoder": NAME, "dims": int(vectors.shape[1]), "items_with_vectors": known, "seconds": round(seconds, 2)}
