"""The hub's bandit job: for every ``bandit`` slot of the live content, Thompson
sampling weights from its exposures and conversions (models/bandit.py), written to the
control bucket as ``bandit.<seed>`` with the next period number, the time they were
computed and the evidence (exposed and converted visitors per variant); edges read them
(edge_agent/bandit_sync.py). Without new evidence the weights and their period stay, so
visitors keep their variant. The evidence is kept up to date from the events since the
last update (``HubStore.bandit_evidence``), not recomputed from every exposure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from hub.experiments.metrics import load_metrics
from hub.live_content import live_content
from hub.state import HubState
from models import nats_layout as L
from models.bandit import BanditWeights, thompson

log = logging.getLogger(__name__)


async def update_bandits(state: HubState) -> dict[str, Any]:
    store, nc = state.storage, state.nc
    assert store is not None
    if nc is None:
        raise ConnectionError("the hub is not connected to NATS")
    content = await live_content(state)
    slots = [
        (name, spec)
        for name, spec in ((content or {}).get("slots") or {}).items()
        if isinstance(spec, dict) and spec.get("kind") == "bandit"
    ]
    if not slots:
        return {"bandits": 0}
    metrics = {m.name: m for m in load_metrics(state.settings.experiment_metrics)}
    kv = await nc.jetstream().key_value(L.CONTROL_BUCKET)
    out: dict[str, Any] = {}
    for name, spec in slots:
        seed = str(spec.get("seed", name))
        metric = metrics.get(str(spec.get("metric", "purchase")))
        if metric is None or metric.kind != "conversion":
            log.warning(
                "bandit %s: metric %r is not a conversion metric of the hub's; weights not updated", name, spec.get("metric")
            )
            out[seed] = {"error": "metric"}
            continue
        started = time.perf_counter()
        variants = [str(v["id"]) for v in spec.get("variants", []) if isinstance(v, dict) and "id" in v]
        evidence_of = await asyncio.to_thread(store.bandit_evidence, seed, metric)
        exposed = [evidence_of.get(v, (0, 0))[0] for v in variants]
        conversions = [evidence_of.get(v, (0, 0))[1] for v in variants]
        key = L.BANDIT_KEY_PREFIX + seed
        previous: dict[str, Any] = {}
        try:
            entry = await kv.get(key)
            if entry is not None and entry.value:
                previous = json.loads(entry.value)
        except Exception:  # nats-py raises KeyNotFoundError for a first update
            pass
        evidence = {
            "exposed": dict(zip(variants, exposed, strict=True)),
            "conversions": dict(zip(variants, conversions, strict=True)),
        }
        if previous and all(previous.get(k) == v for k, v in evidence.items()):
            out[seed] = {"period": previous.get("period"), "unchanged": True}  # no new evidence: visitors keep their variant
            continue
        shares = thompson(conversions, exposed, float(spec.get("min_share", 0.05)))
        period = int(previous.get("period", 0)) + 1
        weights = BanditWeights(
            seed, dict(zip(variants, shares, strict=True)), period, datetime.now(UTC).isoformat(timespec="seconds")
        )
        await kv.put(
            key,
            json.dumps(
                {
                    **weights.as_json(),
                    "exposed": dict(zip(variants, exposed, strict=True)),
                    "conversions": dict(zip(variants, conversions, strict=True)),
                }
            ).encode(),
        )
        out[seed] = {"period": period, "weights": weights.weights, "seconds": round(time.perf_counter() - started, 3)}
    log.info("bandit weights: %s", out)
    return out
