"""The fleet view: edges' heartbeats, and which bundle is live (activate / rollback)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from models import nats_layout as L

log = logging.getLogger(__name__)
#: Edge ids shown at most (a bound on what heartbeats can make the hub hold).
MAX_EDGES = 10_000


class Fleet:
    def __init__(self) -> None:
        self.edges: dict[str, dict[str, Any]] = {}
        #: Edges whose first heartbeat was handled by ``on_new_edge`` without an error.
        self.registered: set[str] = set()

    async def subscribe(self, nc: NATS, on_new_edge: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Follow heartbeats; ``on_new_edge`` runs once per edge (again on the next
        heartbeat when it failed). The edge id comes from the subject, which only that
        edge's credentials may publish on."""

        async def on_status(msg: Msg) -> None:
            edge_id = msg.subject.rsplit(".", 1)[-1]
            try:
                status = json.loads(msg.data)
            except ValueError:
                return
            if not isinstance(status, dict) or (edge_id not in self.edges and len(self.edges) >= MAX_EDGES):
                return
            status["received"] = time.time()
            self.edges[edge_id] = status
            if on_new_edge is not None and edge_id not in self.registered:
                try:
                    await on_new_edge(edge_id)
                    self.registered.add(edge_id)
                except Exception as e:  # retried on the next heartbeat
                    log.warning("registering edge %s failed (%s); retrying on its next heartbeat", edge_id, e)

        await nc.subscribe(f"{L.STATUS_PREFIX}.>", cb=on_status)

    def view(self, stale_after_s: float) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                **status,
                "edge_id": edge_id,
                "stale": now - float(status["received"]) > stale_after_s,
                "seen_s_ago": round(now - float(status["received"]), 1),
            }
            for edge_id, status in sorted(self.edges.items())
        ]


async def activate(nc: NATS, version: int) -> dict[str, Any]:
    """Point ``bundle.current`` at a stored version; KeyError when it is not stored."""
    js = nc.jetstream()
    store = await js.object_store(L.MODELS_BUCKET)
    name = f"bundle-v{version}.tar"
    try:
        result = await store.get(name)
    except Exception as e:
        raise KeyError(name) from e
    data = bytes(result.data or b"")
    pointer = {"name": name, "version": version, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    kv = await js.key_value(L.CONTROL_BUCKET)
    revision = await kv.put(L.CURRENT_BUNDLE_KEY, json.dumps(pointer).encode())
    return {**pointer, "revision": revision}


async def current_pointer(nc: NATS) -> dict[str, Any] | None:
    """What ``bundle.current`` names now (None when nothing was ever made live)."""
    kv = await nc.jetstream().key_value(L.CONTROL_BUCKET)
    try:
        entry = await kv.get(L.CURRENT_BUNDLE_KEY)
    except Exception:  # nats-py raises KeyNotFoundError (or KeyDeletedError)
        return None
    if entry is None or not entry.value:
        return None
    pointer: dict[str, Any] = json.loads(entry.value)
    return pointer


async def previous_version(nc: NATS) -> int | None:
    """The version that was live before the current one (from the key's history)."""
    kv = await nc.jetstream().key_value(L.CONTROL_BUCKET)
    history = await kv.history(L.CURRENT_BUNDLE_KEY)
    versions = [json.loads(e.value)["version"] for e in history if e.value]
    current = versions[-1] if versions else None
    for v in reversed(versions[:-1]):
        if v != current:
            return int(v)
    return None
