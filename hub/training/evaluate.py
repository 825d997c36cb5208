"""``p13n evaluate``: offline comparison of popularity, ALS, item-based (EASE or
item-kNN), content-based, the weighted hybrid and, with ``--stacked``, the stacked
hybrid (its blend fitted on a validation split carved from the training part,
models/stacking.py).

Hyperparameters come from a validation split carved from the training part; every
model is then fitted on the whole training part and scored on the test part, excluding
each user's training items from their ranking.

``--protocol next-item`` (models/next_item.py): each user's latest interaction held
out, hit rate@k and MRR@k for popularity, ALS, the hybrid and the sequence model
(Word2Vec over sessions, models/sequence.py).

``--protocol cold-start`` (models/cold_start.py): a share of the items held out of all
training; recall@k of the content model (TF-IDF over item text), the semantic model
(sentence-encoder vectors of the same text, models/semantic.py) and their mix ranking
them for the users who later interacted with them, against a seeded random ranking.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.cold_start import hold_out_items, recall_at_k
from models.data import Interactions, Item, load_interactions, load_items
from models.evaluation import score, split
from models.next_item import leave_last_out, rank_metrics
from models.recommenders import ALS, Catalog, Content, Hybrid, ItemBased, Popularity, Recommender
from models.semantic import DIMS as SEMANTIC_DIMS
from models.semantic import Semantic, TextMix, item_vectors
from models.sentence_encoder import SentenceEncoder
from models.sequence import SequenceModel, SequenceParams
from models.stacking import Stacked, fit_blend
from models.tuning import Tuned, recommend_all, truth_by_user, tune, validation_split

Progress = Callable[[str], None]


@dataclass
class EvaluationResult:
    report: dict[str, Any]
    recommendations: dict[str, dict[str, list[str]]]


def evaluate(
    train: Interactions,
    test: Interactions,
    items: Mapping[str, Item],
    k: int,
    seed: int,
    progress: Progress | None = None,
    tuned: Tuned | None = None,
    stacked: bool = False,
) -> EvaluationResult:
    """``stacked``: also fit and score the stacked hybrid (``p13n evaluate --stacked``)."""
    say = progress or (lambda _m: None)
    say(f"train {len(train)} interactions, test {len(test)}")
    chosen = tuned or tune(train, items, k, seed, progress=say)
    catalog = Catalog.build(train, list(items))
    truth = truth_by_user(test, catalog)
    users = sorted(truth)
    say("fitting final models")
    als = ALS(catalog, train, chosen.als, seed)
    content = Content(catalog, items, seed=seed)
    hybrid = Hybrid(catalog, als, content, chosen.blend)
    models: list[Recommender] = [Popularity(catalog), als, ItemBased(catalog, train, chosen.items), content, hybrid]
    blend: Stacked | None = None
    if stacked:
        say("fitting the stacked blend on a validation split")
        inner, v_catalog, v_truth, v_users = validation_split(train, items, seed)
        v_als = ALS(v_catalog, inner, chosen.als, seed)
        v_hybrid = Hybrid(v_catalog, v_als, Content(v_catalog, items, seed=seed), chosen.blend)
        blend = Stacked(catalog, hybrid, fit_blend(v_hybrid, v_truth, v_users, seed))
        models.append(blend)
    results: dict[str, Any] = {}
    recs: dict[str, dict[str, list[str]]] = {}
    for model in models:
        recs[model.name] = recommend_all(model, users, k)
        results[model.name] = score(recs[model.name], truth, k, len(catalog.items)).as_dict()
        say(f"{model.name}: ndcg@{k}={results[model.name]['ndcg']:.4f}")
    report = {
        "k": k,
        "seed": seed,
        "train_interactions": len(train),
        "test_interactions": len(test),
        "test_users": len(users),
        "catalog_items": len(catalog.items),
        "metric_definitions": "binary relevance; precision/recall/NDCG/AP at k averaged over test users; coverage = distinct recommended / catalog",
        "models": results,
        "chosen": chosen.chosen(),
        **({"stacked_weights": blend.weights()} if blend is not None else {}),
        "tuning_trials": chosen.trials,
    }
    return EvaluationResult(report, recs)


def evaluate_next_item(
    data: Interactions,
    items: Mapping[str, Item],
    k: int,
    seed: int,
    progress: Progress | None = None,
) -> EvaluationResult:
    """The next-item protocol: hyperparameters tuned on the training part as for the
    holdout protocol, then each model ranks every user's next item."""
    import time

    say = progress or (lambda _m: None)
    cut = leave_last_out(data)
    say(f"next item: {len(cut.cases)} cases, train {len(cut.train)} interactions; skipped {cut.skipped}")
    chosen = tune(cut.train, items, k, seed, progress=say)
    catalog = Catalog.build(cut.train, list(items))
    users = sorted(cut.cases)
    results: dict[str, Any] = {}
    recs: dict[str, dict[str, list[str]]] = {}
    started = time.perf_counter()
    als = ALS(catalog, cut.train, chosen.als, seed)
    content = Content(catalog, items, seed=seed)
    fitted: list[tuple[Recommender, float]] = [(Popularity(catalog), 0.0), (als, time.perf_counter() - started)]
    fitted.append((Hybrid(catalog, als, content, chosen.blend), time.perf_counter() - started))
    started = time.perf_counter()
    fitted.append((SequenceModel(catalog, cut.train, SequenceParams(), seed), time.perf_counter() - started))
    for model, fit_s in fitted:
        recs[model.name] = recommend_all(model, users, k)
        results[model.name] = {**rank_metrics(recs[model.name], cut.cases, k), "fit_s": round(fit_s, 2)}
        say(f"{model.name}: hit@{k}={results[model.name]['hit_rate']:.4f} mrr@{k}={results[model.name]['mrr']:.4f}")
    report = {
        "protocol": "next-item",
        "k": k,
        "seed": seed,
        "train_interactions": len(cut.train),
        "cases": len(cut.cases),
        "skipped": cut.skipped,
        "catalog_items": len(catalog.items),
        "metric_definitions": "each user's latest interaction held out; hit rate@k = share of cases whose item is in the "
        "top k (the user's earlier items excluded); MRR@k = mean of 1/rank (0 past k)",
        "models": results,
        "sequence": SequenceParams().as_dict(),
        "chosen": chosen.chosen(),
    }
    return EvaluationResult(report, recs)


def evaluate_cold_start(
    data: Interactions,
    items: Mapping[str, Item],
    k: int,
    seed: int,
    progress: Progress | None = None,
    share: float = 0.2,
    encoder: SentenceEncoder | None = None,
    semantic_dims: int = SEMANTIC_DIMS,
) -> EvaluationResult:
    """The cold-start protocol: the content model, the semantic model (its vectors cut
    to ``semantic_dims``) and their mix (with an ``encoder``) and a random floor rank
    the cold items."""
    import time

    import numpy as np

    say = progress or (lambda _m: None)
    cut = hold_out_items(data, share, seed)
    described = sum(1 for i in cut.cold if i in items)
    say(f"cold start: {len(cut.cold)} cold items ({described} described), {len(cut.truth)} users")
    catalog = Catalog.build(cut.train, sorted(set(items) | set(cut.cold)))
    cold_idx = np.array([catalog.items.pos[i] for i in cut.cold], dtype=np.int64)
    users = sorted(cut.truth)
    content = Content(catalog, items, seed=seed)
    models: list[Recommender] = [content]
    encoding: dict[str, Any] = {"not_run": "no sentence encoder installed (p13n encoder install)"}
    if encoder is not None:
        started = time.perf_counter()
        vectors = item_vectors(encoder, catalog.items.ids, items, semantic_dims)
        seconds = time.perf_counter() - started
        encoded = int((np.abs(vectors).sum(axis=1) > 0).sum())
        encoding = {"items": encoded, "seconds": round(seconds, 2), "items_per_s": round(encoded / max(seconds, 1e-9), 1)}
        say(f"encoded {encoded} item texts in {seconds:.1f} s")
        semantic = Semantic(catalog, vectors)
        models += [semantic, TextMix(catalog, content, semantic)]
    rng = np.random.default_rng(seed)
    recs: dict[str, dict[str, list[str]]] = {"random": {}, **{m.name: {} for m in models}}
    for user in users:
        recs["random"][user] = [cut.cold[j] for j in rng.permutation(len(cut.cold))[:k]]
        for model in models:
            s = model.scores(user)
            if s is not None:
                order = np.argsort(-s[cold_idx], kind="stable")[:k]
                recs[model.name][user] = [cut.cold[j] for j in order]
    results = {name: {"recall": recall_at_k(by_user, cut.truth, k)} for name, by_user in recs.items()}
    for name, r in results.items():
        say(f"{name}: recall@{k}={r['recall']:.4f}")
    report = {
        "protocol": "cold-start",
        "k": k,
        "seed": seed,
        "share": share,
        "cold_items": len(cut.cold),
        "cold_items_described": described,
        "users": len(users),
        "train_interactions": len(cut.train),
        "expected_random_recall": min(1.0, k / max(1, len(cut.cold))),
        "metric_definitions": "a share of the items held out of all training; recall@k = share of a user's cold items "
        "in the top k of the cold items ranked for them, averaged over users with training history",
        "models": results,
        "encoding": encoding,
    }
    return EvaluationResult(report, recs)


def write_recommendations(path: Path, recs: Mapping[str, Mapping[str, list[str]]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["model", "user_id", "rank", "item_id"])
        for model, by_user in recs.items():
            for user in sorted(by_user):
                for rank, item in enumerate(by_user[user], start=1):
                    w.writerow([model, user, rank, item])


def run(
    interactions: Path | None,
    items_file: Path | None,
    split_how: str,
    ratio: float,
    seed: int,
    k: int,
    train_file: Path | None = None,
    test_file: Path | None = None,
    recommendations_out: Path | None = None,
    progress: Progress | None = None,
    event_weights: Mapping[str, float] | None = None,
    protocol: str = "holdout",
    stacked: bool = False,
    encoder: SentenceEncoder | None = None,
) -> dict[str, Any]:
    if protocol in ("next-item", "cold-start"):
        if interactions is None:
            raise ValueError(f"--protocol {protocol} takes --interactions FILE: it makes its own split")
        items = {i.id: i for i in load_items(items_file)} if items_file else {}
        data = load_interactions(interactions, event_weights)
        if protocol == "next-item":
            result = evaluate_next_item(data, items, k, seed, progress)
        else:
            result = evaluate_cold_start(data, items, k, seed, progress, encoder=encoder)
        if recommendations_out is not None:
            write_recommendations(recommendations_out, result.recommendations)
        return result.report
    if train_file is not None and test_file is not None:
        train, test = load_interactions(train_file, event_weights), load_interactions(test_file, event_weights)
        how = "given"
    elif interactions is not None:
        train, test = split(load_interactions(interactions, event_weights), split_how, ratio, seed)
        how = split_how
    else:
        raise ValueError("give --interactions FILE or both --train and --test")
    items = {i.id: i for i in load_items(items_file)} if items_file else {}
    result = evaluate(train, test, items, k, seed, progress, stacked=stacked)
    result.report["split"] = how
    result.report["ratio"] = ratio if how != "given" else None
    if recommendations_out is not None:
        write_recommendations(recommendations_out, result.recommendations)
    return result.report
