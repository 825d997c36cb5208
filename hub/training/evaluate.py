"""``p13n evaluate``: offline comparison of popularity, ALS, item-based (EASE or
item-kNN), content-based and hybrid.

Hyperparameters come from a validation split carved from the training part; every
model is then fitted on the whole training part and scored on the test part, excluding
each user's training items from their ranking.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.data import Interactions, Item, load_interactions, load_items
from models.evaluation import score, split
from models.recommenders import ALS, Catalog, Content, Hybrid, ItemBased, Popularity, Recommender
from models.tuning import Tuned, recommend_all, truth_by_user, tune

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
) -> EvaluationResult:
    say = progress or (lambda _m: None)
    say(f"train {len(train)} interactions, test {len(test)}")
    chosen = tuned or tune(train, items, k, seed, progress=say)
    catalog = Catalog.build(train, list(items))
    truth = truth_by_user(test, catalog)
    users = sorted(truth)
    say("fitting final models")
    als = ALS(catalog, train, chosen.als, seed)
    content = Content(catalog, items, seed=seed)
    models: list[Recommender] = [
        Popularity(catalog),
        als,
        ItemBased(catalog, train, chosen.items),
        content,
        Hybrid(catalog, als, content, chosen.blend),
    ]
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
        "tuning_trials": chosen.trials,
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
) -> dict[str, Any]:
    if train_file is not None and test_file is not None:
        train, test = load_interactions(train_file, event_weights), load_interactions(test_file, event_weights)
        how = "given"
    elif interactions is not None:
        train, test = split(load_interactions(interactions, event_weights), split_how, ratio, seed)
        how = split_how
    else:
        raise ValueError("give --interactions FILE or both --train and --test")
    items = {i.id: i for i in load_items(items_file)} if items_file else {}
    result = evaluate(train, test, items, k, seed, progress)
    result.report["split"] = how
    result.report["ratio"] = ratio if how != "given" else None
    if recommendations_out is not None:
        write_recommendations(recommendations_out, result.recommendations)
    return result.report
