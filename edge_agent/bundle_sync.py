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
import hashlib
import json
import logging
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from edge_agent.model_runtime import EdgeModels
from edge_agent.nats_loop import while_connected
from edge_agent.state import EdgeState
from models import nats_layout as L
from models.bundle import BundleRejected, load_public_key, open_bundle
from models.content import load_content

log = logging.getLogger(__name__)

CURRENT = "current.tar"
PREVIOUS = "previous.tar"


def bundle_dir(state: EdgeState) -> Path:
    d = state.settings.data_dir / "bundles"
    d.mkdir(parents=True, exist_ok=True)
    return d


def activate(state: EdgeState, data: bytes) -> EdgeModels:
    """Verify, load and swap in ``data``; raises BundleRejected/ValueError without swapping."""
    key = load_public_key(Path(state.settings.bundle_public_key).read_bytes())
    models = EdgeModels(open_bundle(data, key))
    content = load_content(models.content_doc) if models.content_doc is not None else state.bundle
    models.content_doc = None
    state.models, state.bundle = models, content  # the swap
    if content is not None:
        state.metrics.bundle_version.set(content.version)
    d = bundle_dir(state)
    current = d / CURRENT
    if current.exists():
        current.replace(d / PREVIOUS)
    tmp = d / "incoming.tar"
    tmp.write_bytes(data)
    tmp.replace(current)
    return models


def load_persisted(state: EdgeState) -> EdgeModels | None:
    """The last accepted bundle, if any (offline start)."""
    current = bundle_dir(state) / CURRENT
    if not current.exists() or not state.settings.bundle_public_key:
        return None
    key = load_public_key(Path(state.settings.bundle_public_key).read_bytes())
    return EdgeModels(open_bundle(current.read_bytes(), key))


#: Chunk messages requested per pull while downloading a bundle.
FETCH_CHUNKS = 256


async def fetch_object(js: JetStreamContext, store: ObjectStore, name: str) -> bytes:
    """Download an object's chunks with a pull consumer, in order.

    Measured: a 39 MB bundle in 0.09 s, against 3.7 s through nats-py's
    ``ObjectStore.get`` (docs/PERFORMANCE.md). Integrity is checked by the caller
    against the pointer's sha256, and then by the bundle's own signature and hashes.
    """
    info = await store.get_info(name)
    chunks = int(info.chunks or 0)
    if not chunks:
        return b""
    sub = await js.pull_subscribe(f"$O.{L.MODELS_BUCKET}.C.{info.nuid}", durable=None, stream=f"OBJ_{L.MODELS_BUCKET}")
    try:
        parts: list[bytes] = []
        while len(parts) < chunks:
            for msg in await sub.fetch(min(FETCH_CHUNKS, chunks - len(parts)), timeout=10):
                parts.append(msg.data)
        return b"".join(parts)
    finally:
        await sub.unsubscribe()


async def watch_bundles(state: EdgeState) -> None:
    """Follow ``bundle.current`` forever (whenever the NATS connection is up)."""

    async def body(nc: NATS) -> None:
        js = nc.jetstream()
        kv = await js.key_value(L.CONTROL_BUCKET)
        store = await js.object_store(L.MODELS_BUCKET)
        watcher = await kv.watch(L.CURRENT_BUNDLE_KEY)
        async for entry in watcher:
            if entry is None or entry.value is None or entry.operation in ("DEL", "PURGE"):
                continue
            pointer = json.loads(entry.value)
            if state.models is not None and state.models.version == pointer.get("version"):
                continue
            data = await fetch_object(js, store, pointer["name"])
            if pointer.get("sha256") and hashlib.sha256(data).hexdigest() != pointer["sha256"]:
                raise BundleRejected("bad_hash", f"{pointer['name']} does not match the pointer's sha256")
            try:
                models = await asyncio.to_thread(activate, state, data)
            except (BundleRejected, ValueError, KeyError) as e:
                state.bundle_error = f"refused {pointer.get('name')}: {e}"[:300]
                state.metrics.bundles_refused.inc()
                log.error("bundle %s refused: %s", pointer.get("name"), e)
                continue
            state.bundle_error = ""
            log.info("bundle v%d active", models.version)

    def on_error(message: str) -> None:
        state.bundle_error = f"sync: {message}"

    await while_connected(state, body, on_error)
