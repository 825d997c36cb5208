"""Deterministic experiment assignment, with GrowthBook's bucketing semantics (sans-IO).

A visitor's point in [0, 1) is the conformance hash of the experiment's seed and their
visitor id (``hash_version`` 2 by default, 1 the legacy scheme), so they land in the same
place across requests, edges and restarts. Each variation owns a **bucket range**: the
weights (normalised to sum 1; equal by default) cut [0, 1) into consecutive slices, and
coverage shrinks each slice *in place* from its start, ``[start, start + coverage · w)``
(GrowthBook's ``getBucketRanges``). A visitor whose point falls in no range is excluded.
Raising coverage therefore only ever moves visitors from "excluded" into a variation,
never from one variation to another; an experiment can be ramped up without corrupting
its results.

A **namespace** ``(name, start, end)`` makes experiments mutually exclusive: a visitor
takes part only when the hash of ``"__" + name`` (version 1, as GrowthBook) falls in
``[start, end)``; experiments sharing a name with disjoint ranges never share a visitor.

A per-experiment **holdout** (a separate hash, ``seed + ":holdout"``) is shown the
fallback so lift is measurable against it. The site-wide **personalization holdout**
(:class:`GlobalHoldout`) is the same idea for personalization as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.targeting import bucket_hash

HOLDOUT = "holdout"
EXCLUDED = "excluded"
HASH_VERSIONS = (1, 2)


def bucket_ranges(count: int, coverage: float = 1.0, weights: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """Each variation's ``[start, end)`` (GrowthBook's ``getBucketRanges``; weights are
    normalised first, so ``(1, 1, 2)`` means a quarter, a quarter and a half)."""
    coverage = min(1.0, max(0.0, coverage))
    if not weights or len(weights) != count or sum(weights) <= 0:
        weights = [1.0] * count
    total = float(sum(weights))
    ranges = []
    cumulative = 0.0
    for w in weights:
        start = cumulative
        cumulative += w / total
        ranges.append((start, start + coverage * w / total))
    return ranges


def choose_variation(point: float, ranges: Sequence[tuple[float, float]]) -> int:
    """The variation whose range holds ``point``, else -1 (GrowthBook's ``chooseVariation``)."""
    for index, (start, end) in enumerate(ranges):
        if start <= point < end:
            return index
    return -1


def in_namespace(visitor_id: str, namespace: tuple[str, float, float] | None) -> bool:
    """Whether the visitor falls in the namespace's range (GrowthBook's ``inNamespace``)."""
    if namespace is None:
        return True
    name, start, end = namespace
    point = bucket_hash("__" + name, visitor_id, 1)
    return point is not None and start <= point < end


def assign(
    seed: str,
    visitor_id: str,
    weights: Sequence[float],
    coverage: float = 1.0,
    holdout: float = 0.0,
    namespace: tuple[str, float, float] | None = None,
    hash_version: int = 2,
) -> int | str:
    """Variant index, or :data:`HOLDOUT` / :data:`EXCLUDED`."""
    if not in_namespace(visitor_id, namespace):
        return EXCLUDED
    if holdout > 0 and (bucket_hash(seed + ":holdout", visitor_id, 2) or 0.0) < holdout:
        return HOLDOUT
    point = bucket_hash(seed, visitor_id, hash_version)
    if point is None:
        return EXCLUDED
    index = choose_variation(point, bucket_ranges(len(weights), coverage, weights))
    return EXCLUDED if index < 0 else index


@dataclass(frozen=True)
class GlobalHoldout:
    """A share of visitors who see no personalization at all (every slot renders the
    page's own fallback), to measure what personalization as a whole is worth."""

    share: float = 0.0
    seed: str = "p13n-personalization-holdout"

    def holds(self, visitor_id: str) -> bool:
        if self.share <= 0 or not visitor_id:
            return False
        return (bucket_hash(self.seed, visitor_id, 2) or 0.0) < self.share
