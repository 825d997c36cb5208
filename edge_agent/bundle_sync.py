"""Model bundles from the hub: watch ``bundle.current``, verify, load, swap atomically.

The hub stores signed bundles in the ``p13n_models`` object store and names the live
one in the ``p13n_control`` KV key ``bundle.current``. The edge downloads a new bundle,
verifies the signature and every file hash, loads its ONNX sessions, then swaps the
models (and the bundle's content) in one assignment: requests in flight finish on the
objects they already hold. A bundle that fails verification or loading is refused;
the edge keeps serving the old one and reports the error. Accepted bundles are kept
on disk (current and previous) so an edge started without NATS serves from them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from edge_agent.coherence import locked
from edge_agent.js_read import read_batch, read_last
from edge_agent.model_runtime import open_models
from edge_agent.nats_loop import while_connected
from edge_agent.settings import EdgeSettings
from edge_agent.state import EdgeState
from models import nats_layout as L
from models.bundle import MAX_BUNDLE_BYTES, BundleRejected
from models.bundle_runtime import BundleModels
from models.content import load_content
from models.tasks import checkpoint

log = logging.getLogger(__name__)

CURRENT = "current.tar"
PREVIOUS = "previous.tar"


def bundle_dir(settings: EdgeSettings) -> Path:
    d = settings.data_dir / "bundles"
    d.mkdir(parents=True, exist_ok=True)
    return d


def activate(state: EdgeState, data: bytes) -> BundleModels:
    """Verify, load and swap in ``data``; raises BundleRejected/ValueError without swapping."""
    models = open_models(data, state.settings.bundle_public_key, state.settings.model_memo_entries)
    content = load_content(models.content_doc) if models.content_doc is not None else state.bundle
    if models.content_doc is not None:
        state.content_source = f"model bundle v{models.version}"
        log.info("slot content now from bundle v%d (templates edits: `p13n bundle repack`)", models.version)
    models.content_doc = None
    state.models, state.bundle = models, content  # the swap
    if content is not None:
        state.metrics.bundle_version.set(content.version)
    persist(state.settings, data, models.sha256)
    return models


def persist(settings: EdgeSettings, data: bytes, sha256: str) -> None:
    """Keep ``data`` as the current bundle (the current one becomes the previous). Each
    worker accepts a bundle itself: the first to get here writes it, the others find it
    written (an ``flock`` orders them)."""
    d = bundle_dir(settings)
    current = d / CURRENT
    with locked(d / "persist.lock"):
        if current.exists() and hashlib.sha256(current.read_bytes()).hexdigest() == sha256:
            return
        if current.exists():
            current.replace(d / PREVIOUS)
        tmp = d / f"incoming-{os.getpid()}.tar"
        tmp.write_bytes(data)
        tmp.replace(current)


def load_persisted(settings: EdgeSettings) -> BundleModels | None:
    """The last accepted bundle, if any (offline start)."""
    current = bundle_dir(settings) / CURRENT
    if not current.exists() or not settings.bundle_public_key:
        return None
    return open_models(current.read_bytes(), settings.bundle_public_key, settings.model_memo_entries)


#: Chunks read per direct get while downloading a bundle (128 KB each).
FETCH_CHUNKS = 64
#: Seconds between reads of ``bundle.current`` when no change notification arrives.
#: A missed notification (the edge reconnecting as the hub writes) costs at most this
#: (it was 30 s; a CI run caught an edge that waited out the whole 30 s for a push).
POLL_S = 5.0
_POINTER_SUBJECT = L.control_subject(L.CURRENT_BUNDLE_KEY)
_MODELS_STREAM = f"OBJ_{L.MODELS_BUCKET}"


async def fetch_object(nc: NATS, name: str) -> bytes:
    """Download an object of the model store with direct gets, chunk by chunk in order.

    Read-only (an edge holds no consumer: docs/SECURITY.md). Integrity is checked by
    the caller against the pointer's sha256, and then by the bundle's own signature
    and hashes.
    """
    meta_subject = f"$O.{L.MODELS_BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    meta = await read_last(nc, _MODELS_STREAM, meta_subject)
    if meta is None:
        raise BundleRejected("missing", f"{name} is not in the model store")
    info = json.loads(meta.data)
    chunks, nuid, size = int(info.get("chunks") or 0), str(info.get("nuid") or ""), int(info.get("size") or 0)
    if size > MAX_BUNDLE_BYTES:
        raise BundleRejected("too_large", f"{name} is {size} bytes > {MAX_BUNDLE_BYTES}")
    if not chunks:
        return b""
    parts: list[bytes] = []
    received = 0
    seq = 1
    while len(parts) < chunks:
        msgs, _ = await read_batch(
            nc, _MODELS_STREAM, seq, f"$O.{L.MODELS_BUCKET}.C.{nuid}", min(FETCH_CHUNKS, chunks - len(parts))
        )
        if not msgs:
            raise BundleRejected("truncated", f"{name}: {len(parts)} of {chunks} chunks in the store")
        parts.extend(m.data for m in msgs)
        received += sum(len(m.data) for m in msgs)
        if received > size:  # never more than the object declares (and that is bounded)
            raise BundleRejected("too_large", f"{name}: chunks exceed the declared {size} bytes")
        seq = msgs[-1].seq + 1
    return b"".join(parts)


async def watch_bundles(state: EdgeState) -> None:
    """Follow ``bundle.current`` forever (whenever the NATS connection is up): read it
    at once, again whenever the hub writes it (a core subscription wakes the reader)
    and every :data:`POLL_S` seconds."""
    refused: set[str] = set()  # digests already refused: not downloaded again

    async def body(nc: NATS) -> None:
        wake = asyncio.Event()

        async def on_change(_: Msg) -> None:
            wake.set()

        sub = await nc.subscribe(_POINTER_SUBJECT, cb=on_change)
        await nc.flush()  # the server holds the subscription before the first read
        try:
            while True:
                checkpoint()
                wake.clear()
                await check_pointer(state, nc, refused)
                try:
                    await asyncio.wait_for(wake.wait(), POLL_S)
                except TimeoutError:
                    pass
        finally:
            await sub.unsubscribe()

    def on_error(message: str) -> None:
        state.bundle_error = f"sync: {message}"

    await while_connected(state, body, on_error)


async def check_pointer(state: EdgeState, nc: NATS, refused: set[str]) -> None:
    """Read ``bundle.current`` and activate the bundle it names when it is new."""
    entry = await read_last(nc, L.CONTROL_STREAM, _POINTER_SUBJECT)
    if entry is None or entry.headers.get("KV-Operation", "") in ("DEL", "PURGE"):
        return
    pointer = json.loads(entry.data)
    digest = str(pointer.get("sha256", ""))
    live = state.models
    if live is not None and live.version == pointer.get("version") and (not digest or live.sha256 == digest):
        state.bundle_error = ""  # the pointer names what runs: any earlier error is over
        return
    if digest and digest in refused:
        return
    data = await fetch_object(nc, pointer["name"])
    try:
        if digest and hashlib.sha256(data).hexdigest() != digest:
            raise BundleRejected("bad_hash", f"{pointer['name']} does not match the pointer's sha256")
        models = await asyncio.to_thread(activate, state, data)
    except (BundleRejected, ValueError, KeyError) as e:
        refused.add(digest)
        state.bundle_error = f"refused {pointer.get('name')}: {e}"[:300]
        if state.owner:  # every worker checks the bundle: the edge counts it once
            state.metrics.bundles_refused.inc()
        log.error("bundle %s refused: %s", pointer.get("name"), e)
        return
    state.bundle_error = ""
    log.info("bundle v%d active", models.version)
    state.swapped(models.version)
