"""Hyperparameter and model choice on a validation split carved from the training data.

ALS: factors × regularization × alpha on a grid, then iterations. Item-based: EASE's λ
(or item-kNN's shrinkage above EASE's catalog bound). Hybrid: blend weights on a
simplex grid using the chosen ALS and the content model. The objective is NDCG@k on
validation users (a sample, for speed); on a large site the candidates are fitted on a
sample of its users (``MAX_SEARCH_USERS``). The **recommender the edge serves** is the
better of the best ALS and the best item-based model on the same users: both score a
visitor from their history alone, as the edge does. Nothing here is tuned by hand to a
data set; :func:`select` makes the same choice between the two defaults when the
search is off.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.als import ALSParams, max_factors
from models.data import Interactions, Item
from models.evaluation import score, split
from models.item_based import ItemParams
from models.recommenders import ALS, BATCH_USERS, BlendWeights, Catalog, Content, Hybrid, ItemBased, Recommender, top_k_rows

log = logging.getLogger(__name__)

ALS_GRID = {"factors": (32, 64), "regularization": (0.01, 0.1), "alpha": (1.0, 10.0, 40.0)}
ITERATIONS = (10, 20)
#: EASE's λ and item-kNN's shrinkage tried (λ grows with the data's weights; both small
#: and large are in the grid)
EASE_L2 = (10.0, 50.0, 250.0, 1000.0)
KNN_SHRINK = (0.0, 10.0, 100.0)
BLEND_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Validation users scored per candidate (a sample keeps tuning affordable).
MAX_VALIDATION_USERS = 2000
#: The search fits its candidates on the interactions of at most this many users (a
#: seeded sample): a large site's hyperparameters are chosen on a sample of it, and
#: the bundle is then fitted on everything (1M events: docs/PERFORMANCE.md).
MAX_SEARCH_USERS = 10_000

Progress = Callable[[str], None]


@dataclass
class Tuned:
    als: ALSParams
    blend: BlendWeights
    trials: list[dict[str, object]] = field(default_factory=list)
    items: ItemParams = field(default_factory=ItemParams)
    #: what the edge serves sessions with: "als" or "item" (``items.kind`` says which)
    recommender: str = "als"
    #: NDCG@k on validation of the candidates the choice was made between
    validation: dict[str, float] = field(default_factory=dict)

    def chosen(self) -> dict[str, object]:
        """What a report and a manifest say about the choice."""
        return {
            "als": self.als.as_dict(),
            "items": self.items.as_dict(),
            "blend": self.blend.as_dict(),
            "recommender": self.recommender,
            "validation": self.validation,
        }


def truth_by_user(test: Interactions, catalog: Catalog) -> dict[str, set[str]]:
    truth: dict[str, set[str]] = {}
    for u, i in zip(test.users, test.items, strict=True):
        if u in catalog.users.pos and i in catalog.items.pos:
            truth.setdefault(u, set()).add(i)
    return truth


def recommend_all(model: Recommender, users: Sequence[str], k: int) -> dict[str, list[str]]:
    return model.recommend_many(users, k)


def _hybrid_grid(
    catalog: Catalog,
    als: ALS | None,
    content: Content,
    grid: Sequence[BlendWeights],
    truth: Mapping[str, set[str]],
    users: Sequence[str],
    k: int,
) -> list[float]:
    """NDCG@k of every blend in ``grid``; the component scores are computed once per batch."""
    base = Hybrid(catalog, als, content, grid[0])
    recs: list[dict[str, list[str]]] = [{} for _ in grid]
    ids = catalog.items.ids
    for start in range(0, len(users), BATCH_USERS):
        chunk = list(users[start : start + BATCH_USERS])
        z_als, z_content, known = base.components(chunk)
        for g, weights in enumerate(grid):
            scores = base.blend_rows(z_als, z_content, known, weights)
            scores = np.array(scores, dtype=np.float32)
            base.mask_seen(chunk, scores)
            for u, row in zip(chunk, top_k_rows(scores, k), strict=True):
                recs[g][u] = [ids[i] for i in row]
    truth_subset = {u: truth[u] for u in users}
    return [score(r, truth_subset, k, len(catalog.items)).ndcg for r in recs]


def _ndcg(model: Recommender, truth: Mapping[str, set[str]], users: Sequence[str], k: int) -> float:
    return score(recommend_all(model, users, k), {u: truth[u] for u in users}, k, len(model.catalog.items)).ndcg


def _sample(train: Interactions, seed: int) -> Interactions:
    users = sorted(set(train.users.tolist()))
    if len(users) <= MAX_SEARCH_USERS:
        return train
    keep = set(np.random.default_rng(seed).choice(users, MAX_SEARCH_USERS, replace=False).tolist())
    return train.subset(np.fromiter((u in keep for u in train.users.tolist()), dtype=bool, count=len(train)))


def _validation(
    train: Interactions, items: Mapping[str, Item], seed: int
) -> tuple[Interactions, Catalog, dict[str, set[str]], list[str]]:
    inner, valid = split(_sample(train, seed), "random", 0.8, seed)
    catalog = Catalog.build(inner, list(items))
    truth = truth_by_user(valid, catalog)
    users = sorted(truth)
    if len(users) > MAX_VALIDATION_USERS:
        users = sorted(np.random.default_rng(seed).choice(users, MAX_VALIDATION_USERS, replace=False).tolist())
    return inner, catalog, truth, users


def validation_split(
    train: Interactions, items: Mapping[str, Item], seed: int
) -> tuple[Interactions, Catalog, dict[str, set[str]], list[str]]:
    """(inner training part, its catalog, validation items per user, validation users):
    the split the search tunes on, for whatever else is fitted on validation."""
    return _validation(train, items, seed)


def _item_grid(n_items: int) -> list[ItemParams]:
    base = ItemParams.for_catalog(n_items)
    if base.kind == "ease":
        return [ItemParams(kind="ease", l2=v) for v in EASE_L2]
    return [ItemParams(kind="knn", shrink=v) for v in KNN_SHRINK]


def _choose(als_ndcg: float, item_ndcg: float, item: ItemParams) -> tuple[str, dict[str, float]]:
    """The served recommender: the item-based model only when it beats ALS."""
    validation = {"als": als_ndcg, item.kind: item_ndcg}
    return ("item" if item_ndcg > als_ndcg else "als"), validation


def select(train: Interactions, items: Mapping[str, Item], k: int, seed: int, progress: Progress | None = None) -> Tuned:
    """Default hyperparameters, and the served recommender chosen on validation (the
    search's choice without its grid: two fits on 80 % of the data)."""
    say = progress or (lambda _msg: None)
    inner, catalog, truth, users = _validation(train, items, seed)
    als_params = ALSParams.for_catalog(len(catalog.items))
    item_params = ItemParams.for_catalog(len(catalog.items))
    blend = BlendWeights(0.5, 0.25, 0.25)
    if not users:  # nothing to validate on: ALS, as before a choice existed
        return Tuned(als_params, blend, items=item_params)
    als_ndcg = _ndcg(ALS(catalog, inner, als_params, seed), truth, users, k)
    item_ndcg = _ndcg(ItemBased(catalog, inner, item_params), truth, users, k)
    recommender, validation = _choose(als_ndcg, item_ndcg, item_params)
    say(f"serving {recommender}: validation ndcg@{k} als={als_ndcg:.4f} {item_params.kind}={item_ndcg:.4f}")
    return Tuned(als_params, blend, items=item_params, recommender=recommender, validation=validation)


def tune(
    train: Interactions,
    items: Mapping[str, Item],
    k: int,
    seed: int,
    progress: Progress | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    iterations: Sequence[int] = ITERATIONS,
) -> Tuned:
    say = progress or (lambda _msg: None)
    inner, catalog, truth, users = _validation(train, items, seed)
    trials: list[dict[str, object]] = []
    g = grid or ALS_GRID
    cap = max_factors(len(catalog.items))
    factors = sorted({min(int(f), cap) for f in g["factors"]})  # a small catalog: fewer factors
    combos = list(itertools.product(factors, g["regularization"], g["alpha"]))
    best: tuple[float, ALSParams, ALS | None] = (-1.0, ALSParams(), None)
    for n, (f, reg, alpha) in enumerate(combos, start=1):
        params = ALSParams(int(f), float(reg), float(alpha), iterations[0])
        model = ALS(catalog, inner, params, seed)
        value = _ndcg(model, truth, users, k)
        trials.append({"model": "als", **params.as_dict(), "ndcg": value})
        say(f"tuning ALS {n}/{len(combos) + len(iterations) - 1}: {params} ndcg@{k}={value:.4f}")
        if value > best[0]:
            best = (value, params, model)
    for it in iterations[1:]:
        params = ALSParams(best[1].factors, best[1].regularization, best[1].alpha, it)
        model = ALS(catalog, inner, params, seed)
        value = _ndcg(model, truth, users, k)
        trials.append({"model": "als", **params.as_dict(), "ndcg": value})
        say(f"tuning ALS iterations={it}: ndcg@{k}={value:.4f}")
        if value > best[0]:
            best = (value, params, model)
    als_model = best[2]
    best_item: tuple[float, ItemParams] = (-1.0, ItemParams.for_catalog(len(catalog.items)))
    for params_i in _item_grid(len(catalog.items)):
        value = _ndcg(ItemBased(catalog, inner, params_i), truth, users, k)
        trials.append({"model": params_i.kind, **params_i.as_dict(), "ndcg": value})
        say(f"tuning {params_i.kind}: {params_i} ndcg@{k}={value:.4f}")
        if value > best_item[0]:
            best_item = (value, params_i)
    recommender, validation = _choose(best[0], best_item[0], best_item[1])
    say(f"serving {recommender}: validation ndcg@{k} {validation}")
    content = Content(catalog, items, seed=seed)
    blends = [
        BlendWeights(wa, wc, round(1.0 - wa - wc, 4))
        for wa, wc in itertools.product(BLEND_STEPS, BLEND_STEPS)
        if round(1.0 - wa - wc, 4) >= 0 and not (wa == 0 and wc == 0)
    ]
    best_blend = (-1.0, blends[0])
    for weights, value in zip(blends, _hybrid_grid(catalog, als_model, content, blends, truth, users, k), strict=True):
        trials.append({"model": "hybrid", **weights.as_dict(), "ndcg": value})
        if value > best_blend[0]:
            best_blend = (value, weights)
    say(f"tuning hybrid: best weights {best_blend[1].as_dict()} ndcg@{k}={best_blend[0]:.4f}")
    return Tuned(best[1], best_blend[1], trials, best_item[1], recommender, validation)
