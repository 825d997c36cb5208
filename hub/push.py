"""``p13n push BUNDLE``: store a signed bundle in the object store and make it current.

The bundle is verified with the public key first (the hub never points edges at a
bundle it cannot verify itself). ``bundle.current`` then names it with its version and
sha256; every edge watching that key downloads, verifies and swaps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nats

from hub.nats_setup import ensure_layout
from models import nats_layout as L
from models.bundle import load_public_key, open_bundle


async def push(bundle_path: Path, public_key: Path, nats_url: str) -> dict[str, object]:
    data = bundle_path.read_bytes()
    opened = open_bundle(data, load_public_key(public_key.read_bytes()))
    name = f"bundle-v{opened.version}.tar"
    nc = await nats.connect(nats_url.split(","), connect_timeout=5)
    try:
        js = nc.jetstream()
        await ensure_layout(js)
        store = await js.object_store(L.MODELS_BUCKET)
        await store.put(name, data)
        pointer = {"name": name, "version": opened.version, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        kv = await js.key_value(L.CONTROL_BUCKET)
        revision = await kv.put(L.CURRENT_BUNDLE_KEY, json.dumps(pointer).encode())
    finally:
        await nc.close()
    return {**pointer, "revision": revision}
