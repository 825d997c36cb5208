"""Deterministic experiment assignment with the conformance hash (sans-IO).

``bucket_hash(seed, visitor, 2)`` places a visitor in [0, 1): the same visitor always
lands in the same bucket, across requests, edges and restarts. A separate hash decides
the holdout (shown the fallback, so lift is measurable against it), coverage limits
who enters, and the weights split the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.targeting import bucket_hash

HOLDOUT = "holdout"
EXCLUDED = "excluded"


def assign(seed: str, visitor_id: str, weights: Sequence[float], coverage: float = 1.0, holdout: float = 0.0) -> int | str:
    """Variant index, or :data:`HOLDOUT` / :data:`EXCLUDED`."""
    if holdout > 0 and (bucket_hash(seed + ":holdout", visitor_id, 2) or 0.0) < holdout:
        return HOLDOUT
    n = bucket_hash(seed, visitor_id, 2) or 0.0
    if n >= coverage:
        return EXCLUDED
    total = sum(weights)
    point = n / coverage * total
    cumulative = 0.0
    for index, w in enumerate(weights):
        cumulative += w
        if point < cumulative:
            return index
    return len(weights) - 1
