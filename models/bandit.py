"""Thompson sampling for bandit slots (sans-IO; the hub computes, the edge assigns).

Each variant's conversion rate has a Beta(1 + conversions, 1 + exposed − conversions)
posterior. A variant's weight is the probability that it is the best, estimated from
``draws`` joint samples of the posteriors, then floored: every variant keeps at least
``min_share`` (the rest shared by those probabilities), so an arm that looked bad early
can still recover. Weights are shipped to edges with a **period** number; a visitor's
variant is drawn from the weights by a hash of the slot's seed, the period and the
visitor id, so it stays the same for the whole period (and may change when the weights
do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.experiments import EXCLUDED, assign

#: Joint posterior samples per weight update (the estimate's error is about 1/√draws).
DRAWS = 20_000


@dataclass(frozen=True)
class BanditWeights:
    """What the hub ships for one bandit slot (``bandit.<seed>`` in the control bucket)."""

    seed: str
    weights: Mapping[str, float]
    period: int
    computed_at: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "weights": dict(self.weights), "period": self.period, "computed_at": self.computed_at}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BanditWeights:
        weights = doc.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise ValueError("bandit weights: no weights")
        clean = {str(k): float(v) for k, v in weights.items()}
        if any(not (0.0 <= v <= 1.0) for v in clean.values()):
            raise ValueError("bandit weights: each between 0 and 1")
        return cls(str(doc.get("seed", "")), clean, int(doc.get("period", 0)), str(doc.get("computed_at", "")))


def thompson(
    conversions: Sequence[int], exposed: Sequence[int], min_share: float = 0.05, draws: int = DRAWS, seed: int = 0
) -> list[float]:
    """Each arm's weight: P(best) under Beta posteriors, floored at ``min_share``."""
    k = len(exposed)
    if k == 0:
        return []
    if min_share * k > 1.0:
        raise ValueError(f"min_share {min_share} is more than 1/{k} arms")
    c = np.asarray(conversions, dtype=np.float64)
    n = np.asarray(exposed, dtype=np.float64)
    if (c < 0).any() or (c > n).any():
        raise ValueError("conversions must be between 0 and the exposed count")
    rng = np.random.default_rng(seed)
    samples = rng.beta(1.0 + c[:, None], 1.0 + (n - c)[:, None], size=(k, draws))
    wins = np.bincount(samples.argmax(axis=0), minlength=k) / draws
    return [float(min_share + (1.0 - k * min_share) * w) for w in wins]


def choose(seed: str, visitor_id: str, variants: Sequence[str], weights: BanditWeights | None) -> int:
    """The variant index a visitor gets in the current period (equal weights when the
    hub has shipped none yet, or none for these variants)."""
    shares = [float(weights.weights.get(v, 0.0)) for v in variants] if weights is not None else []
    period = weights.period if weights is not None else 0
    if not shares or sum(shares) <= 0:
        shares, period = [1.0] * len(variants), 0
    choice = assign(f"{seed}:{period}", visitor_id, shares)
    return 0 if choice == EXCLUDED else int(choice)
