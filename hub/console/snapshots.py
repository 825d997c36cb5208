"""The ``experiment-snapshots`` job: every ``P13N_HUB_CONSOLE_RESULTS_TTL_S`` the results of
every experiment with exposures, computed as the API computes them with its defaults,
kept for the console's experiment pages (over a large warehouse one experiment's
results take seconds; a page must not)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hub.experiments.metrics import load_metrics
from hub.experiments_api import compute
from hub.state import HubState

#: The query string of the API's defaults (what a page without parameters asks for).
DEFAULT_QUERY = ""


async def snapshot_all(state: HubState) -> dict[str, Any]:
    assert state.storage is not None and state.console is not None
    metrics = load_metrics(state.settings.experiment_metrics)
    found = await asyncio.to_thread(state.storage.experiments)
    done: dict[str, Any] = {}
    for summary in found:
        started = time.perf_counter()
        out = await compute(state, summary.name, metrics)
        if isinstance(out, dict):
            state.console.results[(summary.name, DEFAULT_QUERY)] = (time.time(), out)
            done[summary.name] = round(time.perf_counter() - started, 3)
    return {"experiments": done}
