"""Edge status heartbeats on ``p13n.edges.status.<edge>`` (core NATS, every few seconds).

What the hub's fleet view shows: edge id, content and model bundle versions, live
sessions, outbox depth, last errors, decision time and fallbacks by reason. Nothing about any visitor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from edge_agent.health import health
from edge_agent.state import EdgeState
from models.nats_layout import status_subject
from models.tasks import checkpoint

log = logging.getLogger(__name__)

#: Seconds between heartbeats.
STATUS_INTERVAL_S = 5.0


def status(state: EdgeState) -> dict[str, object]:
    return {
        **health(state),  # the same fields as /_p13n/healthz
        "ts": time.time(),
        "sessions_in_memory": len(state.sessions),
        "profiles_seq": state.store.profile_cursor(),
        "uptime_s": round(time.time() - state.started, 1),
        # decision time and fallback reasons since the agent started (the console's fleet page)
        "decisions": state.metrics.summary(),
    }


async def heartbeat_loop(state: EdgeState, interval_s: float = STATUS_INTERVAL_S) -> None:
    """A heartbeat every ``interval_s``, the first as soon as NATS is connected (the
    hub registers the edge for erasure orders when it hears the first one)."""
    subject = status_subject(state.settings.edge_id)
    while True:
        checkpoint()
        nc = state.nc
        if nc is None or not nc.is_connected:
            await asyncio.sleep(min(0.2, interval_s))
            continue
        try:
            await nc.publish(subject, json.dumps(status(state)).encode())
        except Exception as e:  # a missed heartbeat is only a heartbeat
            log.debug("status publish failed: %s", e)
        await asyncio.sleep(interval_s)
