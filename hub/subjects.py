"""A data subject beyond the store's tiers: the user factors of trained models, and
what an export cannot read (where else data may be, for how long). The tiers
themselves are the store's (``HubStore.resolve_subject``, ``erase_subject``,
``export_subject``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models import nats_layout as L


def erase_user_factors(paths: Iterable[Path], ids: frozenset[str]) -> int:
    """Rewrite ``user-factors-*.npz`` files without the subject's rows; rows removed."""
    removed = 0
    for path in paths:
        if not path.exists():
            continue
        with np.load(path, allow_pickle=False) as data:
            names, factors = data["ids"], data["factors"]
        keep = np.array([str(n) not in ids for n in names], dtype=bool)
        if keep.all():
            continue
        removed += int((~keep).sum())
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, ids=names[keep], factors=factors[keep])
        tmp.replace(path)
    return removed


def held_elsewhere(settings: Any, visitor_ids: Sequence[str]) -> list[dict[str, Any]]:
    """What the export cannot read from the hub's tiers, said plainly: where else data
    about the subject may be, for how long, and that an erasure reaches it too."""
    return [
        {
            "where": "every edge: live session",
            "what": f"recent page views, clicks and categories of visitor ids {list(visitor_ids)} (in memory and the edge's SQLite)",
            "how_long": "until P13N_EDGE_SESSION_TTL_S of inactivity (default 30 minutes)",
        },
        {
            "where": "every edge: profile copy",
            "what": "the 'profiles' of this export, as the edges received them",
            "how_long": "while personalization consent lasts; removed on withdrawal or erasure",
        },
        {
            "where": "every edge: outbox; NATS events stream",
            "what": "events not yet stored by the hub",
            "how_long": "until the hub stores them (normally seconds)",
        },
        {
            "where": "NATS dead-letter stream",
            "what": "messages the hub could not store, as sent",
            "how_long": f"{L.DEAD_LETTER_MAX_AGE_S // 86400} days",
        },
        {
            "where": "hub tiers (this export)",
            "what": "lake, warehouse, dead letters, consent records",
            "how_long": (
                f"lake {settings.retention_lake_days} days, warehouse {settings.retention_warehouse_days} days, "
                f"dead letters {settings.retention_dead_letter_days} days, consent records {settings.retention_consent_days} days"
            ),
        },
        {"where": "all of the above", "what": "erasure", "how_long": "DELETE /v1/subjects/{id} removes the subject from each"},
    ]
