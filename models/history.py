"""A visitor's next-item vector from the items they saw last: what the sequence model
(models/sequence.py) is trained and evaluated with, and what the edge scores a session
with (models/bundle_runtime.py) — one function, so both rank alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The latest items a visitor's next-item vector is made of.
HISTORY = 5


def history_vector(vectors: np.ndarray, items: Sequence[int]) -> np.ndarray | None:
    """The recency-weighted mean of the last ``HISTORY`` items' vectors (latest last;
    its weight halves every step back), unit length; None without a usable item."""
    recent = list(items)[-HISTORY:]
    if not recent:
        return None
    weights = 0.5 ** np.arange(len(recent))[::-1]
    v = (vectors[recent].astype(np.float64) * weights[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else None
