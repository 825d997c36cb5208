"""The ``console-samples`` job: the pipeline's counters, the ingest backlog and the
fleet, sampled into the console's series (hub.console.series)."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.ingest.consumer import consumer_lag
from hub.state import HubState


async def sample(state: HubState) -> dict[str, Any]:
    assert state.storage is not None and state.console is not None
    counters = await asyncio.to_thread(state.storage.counters)
    pending = 0
    if state.nc is not None and state.layout_ready:
        try:
            pending = (await consumer_lag(state.nc.jetstream()))["pending_messages"]
        except Exception:  # NATS away: the backlog is unknown, the rest is still worth a sample
            pending = 0
    edges = state.fleet.view(state.settings.edge_stale_s)
    values = {
        "received": counters.get("received", 0),
        "accepted": counters.get("accepted", 0),
        "duplicates": counters.get("duplicates", 0),
        "dead_letters": sum(v for k, v in counters.items() if k.startswith("dead:")),
        "pending": pending,
        "edges_up": sum(1 for e in edges if not e["stale"]),
        "edges_stale": sum(1 for e in edges if e["stale"]),
    }
    await asyncio.to_thread(state.console.series.record, values)
    return values
