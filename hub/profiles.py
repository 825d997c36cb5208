"""Consented profiles to the edges: the ``p13n_profiles`` KV bucket, keyed by subject.

A subject (a user's pseudonym, or an anonymous visitor id) gets a profile only when its
latest recorded consent includes ``personalization``; a withdrawn consent purges the
key (a purge, not a delete marker: nothing of the profile stays in the bucket). The
profile: aggregated behaviour from the marts, mapped CRM attributes, and the subject's
ALS user factors from the last training run (``P13N_HUB_USER_FACTORS``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable

import numpy as np
from nats.js import JetStreamContext

from hub.storage import HubStore
from models import nats_layout as L

log = logging.getLogger(__name__)


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

    async def run_once(self, store: HubStore, js: JetStreamContext) -> dict[str, int]:
        consent = await asyncio.to_thread(store.consent_by_subject)  # erased subjects never come back
        allowed = sorted(s for s, ok in consent.items() if ok)
        profiles = await asyncio.to_thread(store.profiles, allowed)
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
