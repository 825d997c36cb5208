"""Carry an erasure request through, and finish any that a crash interrupted.

Order of work, each step durable before the next:

1. suppression tokens recorded (late events dropped from here on);
2. the request recorded, with the subject's identifiers encrypted (PII key ring) as
   the pending hub-side work;
3. hub-side deletion (tiers, profiles bucket, user factors), then the identifiers are
   wiped from the record;
4. the order published to the edges, then marked published.

:func:`resume` (run by the hub every few seconds while connected) finishes step 3 for
records that still hold work and step 4 for records not yet published, so a hub
killed at any point completes the erasure after its restart.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from nats.js import JetStreamContext

from hub import erasure, lake_parquet, subjects
from hub.storage import SubjectIds
from models.erasure import ErasureOrder

if TYPE_CHECKING:
    from hub.state import HubState

log = logging.getLogger(__name__)


def seal(state: HubState, request_id: str, subject: SubjectIds) -> str:
    doc = {"given": subject.given, "pseudonym": subject.pseudonym, "anonymous_ids": sorted(subject.anonymous_ids)}
    return state.cipher.encrypt(orjson.dumps(doc), aad=request_id)


def unseal(state: HubState, request_id: str, work: str) -> SubjectIds:
    doc = orjson.loads(state.cipher.decrypt(work, aad=request_id))
    return SubjectIds(doc["given"], doc["pseudonym"], frozenset(doc["anonymous_ids"]))


def factor_files(configured: str, training_dir: Path | None = None) -> list[Path]:
    """The configured user-factors file and its other versions beside it, and those the
    hub's own training runs wrote."""
    found: set[Path] = set()
    if configured:
        path = Path(configured)
        found |= {path, *path.parent.glob("user-factors-v*.npz")}
    if training_dir is not None:
        found |= set(training_dir.glob("user-factors-v*.npz"))
    return sorted(found)


async def erase_at_hub(state: HubState, js: JetStreamContext, request_id: str, subject: SubjectIds) -> dict[str, int]:
    """Step 3: delete everywhere the hub holds data; idempotent."""
    storage = state.storage
    assert storage is not None
    async with state.profiles_lock:
        counts = await asyncio.to_thread(storage.erase_subject, subject)
        if state.publisher is not None:
            state.publisher.forget(subject.all)
        counts["profiles_kv"] = await erasure.purge_profiles(js, subject.all)
        counts["dead_letter_stream"] = await erasure.purge_dead_letters(js, subject.all)
        counts["user_factors"] = await asyncio.to_thread(
            subjects.erase_user_factors, factor_files(state.settings.user_factors, state.settings.training_dir), subject.all
        )
        exported = await lake_parquet.export(state)  # the day files changed: their partitions are rewritten
        if exported is not None:
            counts["lake_parquet.partitions_rewritten"] = len(exported["written"])
    await asyncio.to_thread(state.erasures.hub_done, request_id, counts)
    return counts


async def publish(state: HubState, js: JetStreamContext, order: ErasureOrder) -> bool:
    """Step 4; False when NATS refused (the order stays unpublished for :func:`resume`)."""
    try:
        await erasure.publish_order(js, order)
    except Exception as e:  # NATS away mid-request: resume() publishes it later
        log.warning("erasure order %s not published yet (%s)", order.request_id, type(e).__name__)
        return False
    await asyncio.to_thread(state.erasures.mark_published, order.request_id)
    return True


async def resume(state: HubState, js: JetStreamContext) -> int:
    """Finish interrupted requests; returns how many steps were completed."""
    done = 0
    for request_id, work in await asyncio.to_thread(state.erasures.pending_work):
        await erase_at_hub(state, js, request_id, unseal(state, request_id, work))
        log.info("erasure %s: hub-side deletion finished after an interruption", request_id)
        done += 1
    for order in await asyncio.to_thread(state.erasures.unpublished):
        if await publish(state, js, order):
            done += 1
    return done
