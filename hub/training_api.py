"""``/v1/training/runs``: the hub's training runs (docs/MODELS.md, the learning loop).

* ``GET /v1/training/runs?limit=N`` — whether the hub trains, the run in progress, the
  latest runs (newest first);
* ``GET /v1/training/runs/{id}`` — one run: its record, the last progress lines, and
  the training report (JSON) once a bundle was made;
* ``GET /v1/training/runs/{id}/report.html`` — the report with its plots;
* ``POST /v1/training/runs`` — start a run now (``{"force": true}`` ships the new
  bundle even when the gate fails; audited with the flag).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from hub.requests import query_limit
from hub.responses import json_error
from hub.state import HubState
from hub.training_service import TrainingBusy
from models.http_body import read_body

_RUN_ID = re.compile(r"^[0-9a-f]{12}$")
#: Longest request body ``POST /v1/training/runs`` reads.
MAX_BODY = 1024


async def list_runs(request: Request) -> Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    try:
        limit = query_limit(request, 50, 500)
    except ValueError:
        return json_error(400, "bad_query", "limit is an integer")
    runs = await asyncio.to_thread(state.storage.training_runs.recent, limit)
    return JSONResponse(
        {
            "enabled": state.training.enabled,
            "interval_s": state.settings.training_interval_s if state.training.enabled else None,
            "running": state.training.running,
            "runs": runs,
        }
    )


async def _record(request: Request) -> dict[str, Any] | Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    run_id = request.path_params["run_id"]
    record = await asyncio.to_thread(state.storage.training_runs.get, run_id) if _RUN_ID.match(run_id) else None
    if record is None:
        return json_error(404, "not_found", f"no training run {run_id!r}")
    return record


async def get_run(request: Request) -> Response:
    state: HubState = request.app.state.hub
    record = await _record(request)
    if isinstance(record, Response):
        return record
    record["progress"] = state.training.progress(record["id"])
    report = record.get("report")
    if report:
        path = state.settings.training_dir / report
        try:
            record["report"] = json.loads(await asyncio.to_thread(path.read_text))
        except (OSError, ValueError):
            record["report"] = None
    return JSONResponse(record)


async def run_report_html(request: Request) -> Response:
    state: HubState = request.app.state.hub
    record = await _record(request)
    if isinstance(record, Response):
        return record
    report = record.get("report")
    path = state.settings.training_dir / str(report).replace(".json", ".html") if report else None
    if path is None or not path.is_file():
        return json_error(404, "no_report", "this run made no bundle, so it has no report")
    return HTMLResponse(await asyncio.to_thread(path.read_text, "utf-8"))


async def start_run(request: Request) -> Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    if not state.training.enabled:
        return json_error(503, "training_off", "this hub does not train: set P13N_HUB_TRAINING_KEY (docs/SETTINGS.md)")
    if state.nc is None or not state.layout_ready:
        return json_error(503, "nats_unavailable", "the hub is not connected to NATS; try again shortly")
    body = await read_body(request, MAX_BODY)
    if body is None:
        return json_error(413, "too_large", f"the body is at most {MAX_BODY} bytes")
    force = False
    if body.strip():
        try:
            doc = json.loads(body)
        except ValueError:
            return json_error(400, "bad_json", 'expected {"force": true|false} or no body')
        if not isinstance(doc, dict) or set(doc) - {"force"} or not isinstance(doc.get("force", False), bool):
            return json_error(400, "bad_request", 'expected {"force": true|false} or no body')
        force = doc.get("force", False)
    principal = request.state.principal
    try:
        run = await state.training.start(state.storage, state.nc, "api", principal.name, force)
    except TrainingBusy as e:
        return json_error(409, "run_in_progress", f"run {e.run_id} is in progress; one run at a time")
    request.state.audit.update(run=run["id"], force=force)
    return JSONResponse({"run": run}, status_code=202)
