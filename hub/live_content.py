"""The live bundle's slot content (``content.json``), as the hub's experiment analysis and
bandit job need it: read through the bundle pointer and the model store, verified with
the hub's bundle key, kept per bundle version."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from hub import bundles, fleet
from hub.state import HubState
from models.bundle import load_public_key, open_bundle

log = logging.getLogger(__name__)

#: Live content documents by bundle version (a couple at most).
_CONTENT: dict[int, dict[str, Any] | None] = {}


async def live_content(state: HubState) -> dict[str, Any] | None:
    """The live bundle's ``content.json`` (None without NATS, a live bundle or a key)."""
    if state.nc is None or not state.settings.bundle_public_key:
        return None
    try:
        pointer = await fleet.current_pointer(state.nc)
        if pointer is None:
            return None
        version = int(pointer["version"])
        if version not in _CONTENT:
            data = await bundles.fetch(state.nc.jetstream(), version)
            key = load_public_key(await asyncio.to_thread(Path(state.settings.bundle_public_key).read_bytes))
            bundle = await asyncio.to_thread(open_bundle, data, key) if data else None
            _CONTENT.clear()
            _CONTENT[version] = bundle.json("content.json") if bundle and "content.json" in bundle.files else None
        return _CONTENT[version]
    except Exception as e:  # results without a design are still results
        log.info("live content unavailable (%s: %s)", type(e).__name__, e)
        return None
