"""Consented profiles to the edges: the ``p13n_profiles`` KV bucket, keyed by subject.

A subject (a user's pseudonym, or an anonymous visitor id) gets a profile only when its
latest recorded consent includes ``personalization``; a withdrawn consent purges the
key (a purge, not a delete marker: nothing of the profile stays in the bucket). The
profile: aggregated behaviour from the marts, mapped CRM attributes, and the subject's
ALS user factors from the last training run (``P13N_HUB_USER_FACTORS``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np
from nats.js import JetStreamContext

from hub.ingest.storage import HubStorage
from models import nats_layout as L

log = logging.getLogger(__name__)


#: The order of consent choices: by receive time (the edge's clock, kept within the
#: hub's skew window; a visitor cannot set it, unlike the client's ``ts``), and among
#: choices received in the same millisecond grants before withdrawals, so a withdrawal
#: never loses to a grant it raced with; then arrival order.
CONSENT_ORDER = "received_at, instr(coalesce(props, ''), '\"personalization\"') > 0 DESC, rowid"


def consent_by_subject(storage: HubStorage) -> dict[str, bool]:
    """Latest consent choice per subject: True when it includes personalization."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = db.execute(
            f"SELECT coalesce(user_id, anonymous_id), props FROM events WHERE type = 'consent' ORDER BY {CONSENT_ORDER}"
        ).fetchall()
    finally:
        db.close()
    out: dict[str, bool] = {}
    for subject, props in rows:
        if subject:
            categories = json.loads(props or "{}").get("categories", [])
            out[subject] = "personalization" in categories
    return out


def build_profiles(storage: HubStorage, subjects: list[str]) -> dict[str, dict[str, Any]]:
    if not subjects:
        return {}
    marts = storage.reader(storage.data_dir / "marts.sqlite")
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    profiles: dict[str, dict[str, Any]] = {}
    try:
        for i in range(0, len(subjects), 900):
            chunk = subjects[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for row in marts.execute(
                f"SELECT subject, views, clicks, carts, purchases, revenue_minor, last_ts, category_views FROM user_features WHERE subject IN ({marks})",
                chunk,
            ):
                profiles[row[0]] = {
                    "views": row[1],
                    "clicks": row[2],
                    "carts": row[3],
                    "purchases": row[4],
                    "revenue_minor": row[5],
                    "last_ts": row[6],
                    "category_views": json.loads(row[7]) if row[7] else {},
                }
            for user_id, attributes in wh.execute(f"SELECT user_id, attributes FROM users WHERE user_id IN ({marks})", chunk):
                if attributes:
                    profiles.setdefault(user_id, {})["attributes"] = json.loads(attributes)
    except sqlite3.OperationalError:
        return {}
    finally:
        marts.close()
        wh.close()
    return profiles


def load_user_factors(path: str) -> dict[str, list[float]]:
    """Subject → ALS factors from ``p13n train``'s ``user-factors-vN.npz`` (no pickles)."""
    if not path:
        return {}
    with np.load(path, allow_pickle=False) as data:
        ids, factors = data["ids"], data["factors"]
        return {str(i): [round(float(x), 6) for x in row] for i, row in zip(ids, factors, strict=True)}


class ProfilePublisher:
    """Publishes changed consented profiles; purges withdrawn ones."""

    def __init__(self, user_factors: dict[str, list[float]] | None = None) -> None:
        self.published: dict[str, str] = {}  # subject → hash of what the KV holds
        self.user_factors = user_factors or {}

    def forget(self, subjects: Iterable[str]) -> None:
        """An erased subject: drop what this publisher remembers of it."""
        for subject in subjects:
            self.published.pop(subject, None)
            self.user_factors.pop(subject, None)

    async def run_once(self, storage: HubStorage, js: JetStreamContext) -> dict[str, int]:
        import asyncio

        consent = await asyncio.to_thread(consent_by_subject, storage)
        tokenizer = storage.tokenizer
        if storage.suppressed and tokenizer is not None:  # erased subjects never come back
            consent = {s: ok for s, ok in consent.items() if tokenizer(s) not in storage.suppressed}
        allowed = sorted(s for s, ok in consent.items() if ok)
        profiles = await asyncio.to_thread(build_profiles, storage, allowed)
        kv = await js.key_value(L.PROFILES_BUCKET)
        put = purged = 0
        for subject in allowed:
            profile = profiles.get(subject, {})
            if subject in self.user_factors:
                profile["factors"] = self.user_factors[subject]
            body = json.dumps(profile, sort_keys=True).encode()
            digest = hashlib.sha256(body).hexdigest()
            if self.published.get(subject) != digest:
                await kv.put(subject, body)
                self.published[subject] = digest
                put += 1
        for subject, ok in consent.items():
            if not ok and subject in self.published:
                await kv.purge(subject)
                del self.published[subject]
                purged += 1
            elif not ok and subject not in self.published:
                try:  # a subject withdrawn before this hub process started
                    entry = await kv.get(subject)
                    if entry is not None:
                        await kv.purge(subject)
                        purged += 1
                except Exception:
                    pass
        return {"published": put, "purged": purged}
