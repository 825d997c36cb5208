"""Bandit weights from the hub: for every bandit slot of the live content, the newest
``bandit.<seed>`` entry of the control bucket, read with a direct get every
``P13N_EDGE_BANDIT_POLL_S`` seconds (edges hold no consumers: docs/SECURITY.md). Until
the hub has computed weights a bandit splits evenly; weights the edge cannot read are
logged and the last good ones kept."""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.client import Client as NATS

from edge_agent.js_read import read_last
from edge_agent.nats_loop import while_connected
from edge_agent.state import EdgeState
from models import nats_layout as L
from models.bandit import BanditWeights
from models.tasks import checkpoint

log = logging.getLogger(__name__)


async def refresh(state: EdgeState, nc: NATS) -> int:
    """Read the weights of every bandit slot; how many changed."""
    bundle = state.bundle
    seeds = {slot.seed for slot in bundle.slots.values() if slot.kind == "bandit"} if bundle else set()
    changed = 0
    for seed in sorted(seeds):
        entry = await read_last(nc, L.CONTROL_STREAM, L.control_subject(L.BANDIT_KEY_PREFIX + seed))
        if entry is None or entry.headers.get("KV-Operation", "") in ("DEL", "PURGE"):
            continue
        try:
            weights = BanditWeights.from_json(json.loads(entry.data))
        except (ValueError, TypeError) as e:
            log.warning("bandit %s: weights refused (%s); the last good ones stay", seed, e)
            continue
        if state.bandits.get(seed) != weights:
            state.bandits[seed] = weights
            changed += 1
    for gone in set(state.bandits) - seeds:
        del state.bandits[gone]
    return changed


async def follow_bandits(state: EdgeState) -> None:
    async def body(nc: NATS) -> None:
        while True:
            checkpoint()
            if await refresh(state, nc):
                log.info("bandit weights: %s", {s: w.period for s, w in state.bandits.items()})
            await asyncio.sleep(state.settings.bandit_poll_s)

    def on_error(message: str) -> None:
        log.debug("bandit weights: %s", message)

    await while_connected(state, body, on_error)
