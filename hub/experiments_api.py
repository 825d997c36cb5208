"""``/v1/experiments``: experiment and holdout results (docs/EXPERIMENTS.md).

* ``GET /v1/experiments`` — every experiment with exposures: exposures per variant,
  first and last, and where its design comes from;
* ``GET /v1/experiments/{name}/results`` — per variant and metric: users, mean, lift
  against the control, interval, p-value, chance to win; the sample-ratio check. Query:
  ``metrics=a,b`` (default: all defined), ``control=variant``, ``alpha=0.05``,
  ``method=fixed|sequential``, ``cuped=true|false``;
* ``GET /v1/experiments/{name}/results.html`` — the same with a lift plot.

The design (control, expected shares) is read from the live bundle's content, fetched
once per bundle version.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from hub.experiments.analysis import METHODS, Design, design_of, results
from hub.experiments.metrics import Metric, MetricError, load_metrics, pick
from hub.experiments.report import render_html
from hub.live_content import live_content
from hub.responses import json_error
from hub.state import HubState

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


async def list_experiments(request: Request) -> Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    found = await asyncio.to_thread(state.storage.experiments)
    content = await live_content(state)
    return JSONResponse(
        {
            "experiments": [
                {
                    "name": e.name,
                    "exposures": e.exposures,
                    "first_exposure": e.first_exposure,
                    "last_exposure": e.last_exposure,
                    "design": design_of(e.name, content).source,
                }
                for e in found
            ]
        }
    )


async def results_for(request: Request) -> dict[str, Any] | Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    name = request.path_params["name"]
    if not _NAME.match(name):
        return json_error(400, "bad_name", "an experiment name is 1-64 letters, digits or _ . : -")
    q = request.query_params
    method = q.get("method", "fixed")
    if method not in METHODS:
        return json_error(400, "bad_query", f"method is one of {METHODS}")
    try:
        alpha = float(q.get("alpha", "0.05"))
        if not 0.001 <= alpha <= 0.5:
            raise ValueError
    except ValueError:
        return json_error(400, "bad_query", "alpha is a number from 0.001 to 0.5")
    cuped = q.get("cuped", "true")
    if cuped not in ("true", "false"):
        return json_error(400, "bad_query", "cuped is true or false")
    control = q.get("control", "")
    if control and not _NAME.match(control):
        return json_error(400, "bad_query", "control names a variant")
    try:
        metrics = pick(load_metrics(state.settings.experiment_metrics), [m for m in q.get("metrics", "").split(",") if m])
    except MetricError as e:
        return json_error(400, "bad_metrics", str(e))
    found = await compute(state, name, metrics, control, alpha, method, cuped == "true")
    if isinstance(found, tuple):
        return json_error(*found)
    return found


async def compute(
    state: HubState,
    name: str,
    metrics: Sequence[Metric],
    control: str = "",
    alpha: float = 0.05,
    method: str = "fixed",
    cuped: bool = True,
) -> dict[str, Any] | tuple[int, str, str]:
    """An experiment's results, or (status, reason, detail) when there are none."""
    assert state.storage is not None
    data = await asyncio.to_thread(state.storage.experiment, name, metrics)
    if not data.users:
        return 404, "not_found", f"no exposures of experiment {name!r}"
    if control and control not in data.users:
        return 400, "bad_query", f"control {control!r} has no users; variants: {sorted(data.users)}"
    content = await live_content(state)
    design = design_of(name, content) if content else Design()
    return await asyncio.to_thread(results, data, metrics, design, control, alpha, method, 5000.0, cuped)


async def experiment_results(request: Request) -> Response:
    out = await results_for(request)
    if isinstance(out, Response):
        return out
    return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


async def experiment_results_html(request: Request) -> Response:
    out = await results_for(request)
    if isinstance(out, Response):
        return out
    return HTMLResponse(render_html(out))
