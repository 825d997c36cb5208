"""What the edge says about itself: ``/_p13n/healthz`` and the heartbeat the hub shows
in ``/v1/edges`` are built here, so both say the same thing under the same names.

``status`` is ``ok`` when the edge has slot content, a model bundle and no bundle
error; otherwise ``degraded`` with the ``problems`` that make it so. A degraded edge
still serves every page (slots fall back), so the HTTP status stays 200: take it out of
rotation only when the agent does not answer.
"""

from __future__ import annotations

import os
from typing import Any

from edge_agent.state import EdgeState


def problems(state: EdgeState) -> list[str]:
    out = []
    if state.bundle is None:
        out.append("no_content")
    if state.models is None:
        out.append("no_model")
    if state.bundle_error:
        out.append("bundle_error")
    return out


def health(state: EdgeState) -> dict[str, Any]:
    found = problems(state)
    models = state.models
    model_version = models.version if models else None
    workers: dict[int, int | None] = {os.getpid(): model_version}
    if state.coherence is not None:
        workers = state.coherence.workers() or workers
        # a swap reaches the workers one by one: the edge serves the oldest
        versions = [v for v in workers.values() if v is not None]
        model_version = min(versions) if len(versions) == len(workers) else None
    return {
        "status": "degraded" if found else "ok",
        "problems": found,
        "edge_id": state.settings.edge_id,
        "content_source": state.content_source,
        "bundle_version": state.bundle.version if state.bundle else None,
        "model_version": model_version,
        "model_sha256": models.sha256 if models else None,
        "bundle_error": state.bundle_error,
        "nats": "connected" if state.nc is not None and state.nc.is_connected else "disconnected",
        "last_error": state.last_error,
        "outbox_depth": state.coherence.outbox if state.coherence is not None else state.outbox_depth,
        # the worker process that answered, and how many serve this edge (P13N_EDGE_WORKERS)
        "worker": {"pid": os.getpid(), "owner": state.owner},
        "workers": len(workers),
        "shells_cached": len(state.shells),
        "profiles": state.store.profile_count(),
        "suppressed_subjects": len(state.store.suppressed),
        # each bandit slot's weights (absent: splitting evenly until the hub ships some)
        "bandits": {seed: {"period": w.period, "weights": dict(w.weights)} for seed, w in state.bandits.items()},
    }
