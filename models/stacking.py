"""A stacked hybrid: a learned blend of the recommenders' scores and ranks.

The weighted hybrid (models/recommenders.py) adds z-scored ALS, content and popularity
scores with weights chosen from a grid. Stacking learns the blend instead: for each
(user, item) the features are those three z-scores and the reciprocal ranks of the
item in the ALS and content lists; a logistic regression fitted on a validation split
(positives: the items a user interacted with there that its training part knows;
negatives: ``NEGATIVES`` random other known items per positive) turns them into one score. The regression is exported as
ONNX with skl2onnx (``features`` [N, 5] → probabilities), the form a bundle carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.recommenders import Catalog, Hybrid, Recommender, zscore_rows

FEATURES = ("als", "content", "popularity", "als_rank", "content_rank")
#: Random negatives sampled per positive when fitting.
NEGATIVES = 20


def _reciprocal_ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(scores.shape[1])[None, :]
    out: np.ndarray = (1.0 / (1.0 + ranks)).astype(np.float32)
    return out


def feature_rows(hybrid: Hybrid, users: Sequence[str]) -> np.ndarray:
    """[users, items, 5]: z-scored ALS, content and popularity scores and the ALS and
    content reciprocal ranks (zeros where a model knows nothing of the user)."""
    z_als, z_content, _ = hybrid.components(users)
    shape = (len(users), len(hybrid.catalog.items))
    z_als = z_als if z_als is not None else np.zeros(shape, dtype=np.float32)
    z_content = z_content if z_content is not None else np.zeros(shape, dtype=np.float32)
    pop = zscore_rows(np.log1p(hybrid.catalog.popularity)[None, :].astype(np.float32))
    return np.stack(
        [z_als, z_content, np.broadcast_to(pop, shape), _reciprocal_ranks(z_als), _reciprocal_ranks(z_content)], axis=2
    )


def fit_blend(hybrid: Hybrid, truth: Mapping[str, set[str]], users: Sequence[str], seed: int = 42) -> LogisticRegression:
    """The blend fitted on validation ``truth`` (items each user interacted with)."""
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    pos = hybrid.catalog.items.pos
    # only items the validation's training part has seen: one it never saw is a split
    # artefact (a random split leaves most rare items out of it), and a blend fitted on
    # those learns to prefer unpopular items
    known = np.flatnonzero(hybrid.catalog.popularity > 0)
    seen_items = set(known.tolist())
    for start in range(0, len(users), 256):
        chunk = list(users[start : start + 256])
        f = feature_rows(hybrid, chunk)
        for r, user in enumerate(chunk):
            positives = np.array([pos[i] for i in truth[user] if i in pos and pos[i] in seen_items], dtype=np.int64)
            if not len(positives):
                continue
            seen = set(hybrid.catalog.seen(user).tolist()) | set(positives.tolist())
            candidates = known[rng.integers(0, len(known), size=NEGATIVES * len(positives) * 2)]
            negatives = np.array([c for c in candidates if c not in seen][: NEGATIVES * len(positives)], dtype=np.int64)
            xs += [f[r, positives], f[r, negatives]]
            ys += [np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(C=1.0, max_iter=500)
    model.fit(np.concatenate(xs), np.concatenate(ys))
    return model


class Stacked(Recommender):
    """The hybrid's components through a fitted blend (popularity for unknown users)."""

    name = "stacked"

    def __init__(self, catalog: Catalog, hybrid: Hybrid, blend: LogisticRegression) -> None:
        super().__init__(catalog)
        self.hybrid = hybrid
        self.blend = blend
        self.coef = blend.coef_[0].astype(np.float32)

    def score_rows(self, users: Sequence[str]) -> np.ndarray:
        _, _, known = self.hybrid.components(users)
        scores: np.ndarray = feature_rows(self.hybrid, users) @ self.coef
        scores[~known] = self.catalog.popularity
        return scores

    def scores(self, user: str) -> np.ndarray | None:
        _, _, known = self.hybrid.components([user])
        return self.score_rows([user])[0] if known[0] else None

    def weights(self) -> dict[str, float]:
        return {name: round(float(w), 4) for name, w in zip(FEATURES, self.coef, strict=True)}


def to_onnx(blend: LogisticRegression) -> bytes:
    """The blend as ONNX: ``features`` [N, 5] → label and probabilities."""
    from skl2onnx import to_onnx as sk_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = sk_to_onnx(
        blend,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(blend): {"zipmap": False}},
    )
    data: bytes = onx.SerializeToString()
    return data
