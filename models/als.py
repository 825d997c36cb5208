"""Collaborative filtering with implicit's ALS, and exact fold-in for new sessions.

Conventions (implicit ≥ 0.5): ``fit`` takes a **users × items** matrix; its values are
confidences used as ``c = alpha · weight`` in ``A = YᵀY + λI + Σ (c−1)·y·yᵀ``,
``b = Σ c·y``. :func:`fold_in` solves exactly that system for a visitor who is not in
the model (an anonymous session), so the edge reproduces ``recalculate_user``.

BLAS thread oversubscription: implicit parallelises over users itself; BLAS is held
to one thread while it trains (threadpoolctl).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # training only: the edge imports this module for fold-in and never loads SciPy (~20 MB)
    import scipy.sparse as sp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def for_catalog(cls, items: int) -> ALSParams:
        """The defaults, with no more factors than the catalog can fill (see
        :func:`max_factors`)."""
        return cls(factors=min(cls.factors, max_factors(items)))


def max_factors(items: int) -> int:
    """Most factors worth fitting for a catalog of ``items``: one per six items, at least
    two. More and each item of a small catalog gets a dimension of its own, and
    neighbours stop generalizing (measured on the demo's 24 items: 4 factors put 100 %
    of the top four in a visitor's taste group, 64 factors 49 %; docs/MODELS.md)."""
    return max(2, items // 6)


@dataclass(frozen=True)
class ALSFactors:
    user_factors: np.ndarray  # [users, factors] float32
    item_factors: np.ndarray  # [items, factors] float32
    params: ALSParams

    def gram(self) -> np.ndarray:
        """YᵀY + λI, the part of every fold-in system that does not depend on the visitor."""
        y = self.item_factors.astype(np.float64)
        return y.T @ y + self.params.regularization * np.eye(y.shape[1])


def train_als(user_items: sp.csr_matrix, params: ALSParams, seed: int = 42, threads: int = 0) -> ALSFactors:
    """Fit ALS on a users × items weight matrix."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit checks BLAS threads when constructed
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=seed,
            num_threads=threads,
            calculate_training_loss=False,
        )
        model.fit(user_items.astype(np.float32).tocsr(), show_progress=False)
    return ALSFactors(
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
        params,
    )


def fold_in(item_factors: np.ndarray, gram: np.ndarray, items: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """User vector for a visitor with interactions ``(items, weights)``; exact solve."""
    if len(items) == 0:
        return np.zeros(item_factors.shape[1], dtype=np.float32)
    y = item_factors[items].astype(np.float64)
    c = alpha * np.asarray(weights, dtype=np.float64)
    a = gram + (y.T * (c - 1.0)) @ y
    b = y.T @ c
    return np.linalg.solve(a, b).astype(np.float32)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indexes of the ``k`` best scores, best first, never any of ``exclude``."""
    s = scores.astype(np.float32, copy=True)
    if exclude is not None and len(exclude):
        s[exclude] = -np.inf
    k = min(k, len(s))
    part = np.argpartition(-s, k - 1)[:k]
    return part[np.argsort(-s[part], kind="stable")]


def fold_in_low_rank(
    item_factors: np.ndarray, gram_inv: np.ndarray, items: np.ndarray, weights: np.ndarray, alpha: float
) -> np.ndarray:
    """The same solution as :func:`fold_in`, through the Woodbury identity.

    ``A = G + Yₖᵀ D Yₖ`` with ``D = diag(c − 1)`` is a rank-k update of ``G = YᵀY + λI``;
    with ``G⁻¹`` precomputed once per model, a session of k ≪ factors items costs a k × k
    solve instead of a factors × factors one:
    ``A⁻¹ = G⁻¹ − G⁻¹Yₖᵀ (I + D Yₖ G⁻¹ Yₖᵀ)⁻¹ D Yₖ G⁻¹`` (valid when some c = 1).
    """
    if len(items) == 0:
        return np.zeros(item_factors.shape[1], dtype=np.float32)
    y = item_factors[items].astype(np.float64)  # k × f
    c = alpha * np.asarray(weights, dtype=np.float64)
    b = y.T @ c
    z = y @ gram_inv  # k × f  (= Yₖ G⁻¹, G symmetric)
    m = np.eye(len(c)) + (c - 1.0)[:, None] * (z @ y.T)
    g_b = gram_inv @ b
    correction = z.T @ np.linalg.solve(m, (c - 1.0) * (y @ g_b))
    return np.asarray(g_b - correction, dtype=np.float32)
