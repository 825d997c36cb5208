"""Hub endpoints for data subjects and privacy operations.

* ``DELETE /v1/subjects/{subject}`` — erase everywhere (202 + request id);
* ``GET /v1/subjects/{subject}`` — export everything held (the access request);
* ``GET /v1/erasures/{request_id}`` — a request's status per edge;
* ``DELETE /v1/edges/{edge_id}`` — deregister an edge (it no longer holds up erasures);
* ``POST /v1/retention/run`` — run the retention job now;
* ``GET /v1/audit`` — read the audit log.

Roles are checked by :mod:`hub.guard` around each handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import nats.errors
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import erasure, erasure_service, retention, subjects
from hub.requests import query_limit
from hub.responses import json_error
from models import nats_layout as L
from models.erasure import ErasureOrder, erasure_token

if TYPE_CHECKING:
    from hub.state import HubState

MAX_SUBJECT_CHARS = 256
RETRY_AFTER_S = 5
RETRY_HEADERS = {"retry-after": str(RETRY_AFTER_S)}
#: What a JetStream call raises while the server or its cluster is away or electing.
NATS_ERRORS = (nats.errors.Error, TimeoutError)

log = logging.getLogger(__name__)


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


def _subject_param(request: Request) -> str | JSONResponse:
    """The subject id of the path, or the 400 to answer."""
    given = str(request.path_params["subject"]).strip()
    if 0 < len(given) <= MAX_SUBJECT_CHARS:
        return given
    return json_error(400, "bad_subject", f"a subject id is 1 to {MAX_SUBJECT_CHARS} characters")


async def erase_subject(request: Request) -> Response:
    state = _state(request)
    given = _subject_param(request)
    if isinstance(given, Response):
        return given
    nc = state.nc
    if nc is None or not state.layout_ready or not nc.is_connected:
        return json_error(503, "nats_unavailable", "erasure needs NATS to reach the edges; retry later", RETRY_HEADERS)
    js = nc.jetstream()
    storage = state.storage
    assert storage is not None
    key = state.settings.pseudonym_key.encode()
    subject = await asyncio.to_thread(storage.resolve_subject, given, key)
    tokens = sorted({erasure_token(i, key) for i in subject.all})
    edges = await erasure.registered_edges(js)  # NATS not answering: hub/guard.py answers 503, nothing recorded
    order = ErasureOrder("er_" + uuid.uuid4().hex, tuple(tokens), time.time())
    # each step is durable before the next; erasure_service.resume() finishes an interrupted one
    await asyncio.to_thread(storage.suppress, tokens, datetime.fromtimestamp(order.issued_at, UTC).isoformat())
    principal = request.state.principal
    work = erasure_service.seal(state, order.request_id, subject)
    await asyncio.to_thread(state.erasures.create, order, principal.name, edges, work)
    state.erasure_requests.inc()
    try:
        hub_counts: dict[str, int] | None = await erasure_service.erase_at_hub(state, js, order.request_id, subject)
    except NATS_ERRORS as e:  # recorded: erasure_service.resume() finishes it within seconds
        log.warning("erasure %s: hub-side deletion left to resume (%s)", order.request_id, type(e).__name__)
        hub_counts = None
    published = await erasure_service.publish(state, js, order)
    request.state.audit = {"request_id": order.request_id, "tokens": tokens, "edges": len(edges)}
    body = await asyncio.to_thread(state.erasures.status, order.request_id)
    assert body is not None
    body["order_published"] = published
    # item factors were learned with the subject's interactions: the next training run
    # (which no longer sees them) replaces them
    # (unknown while the hub-side deletion is still pending: recommend it)
    body["retrain_recommended"] = (
        hub_counts is None or hub_counts.get("warehouse.events", 0) > 0 or hub_counts["user_factors"] > 0
    )
    return JSONResponse(body, status_code=202, headers={"location": f"/v1/erasures/{order.request_id}"})


async def erasure_status(request: Request) -> Response:
    state = _state(request)
    request_id = str(request.path_params["request_id"])
    body = await asyncio.to_thread(state.erasures.status, request_id)
    if body is None:
        return json_error(404, "unknown_request", f"no erasure request {request_id!r}")
    return JSONResponse(body)


async def export_subject(request: Request) -> Response:
    state = _state(request)
    given = _subject_param(request)
    if isinstance(given, Response):
        return given
    storage = state.storage
    assert storage is not None
    subject = await asyncio.to_thread(storage.resolve_subject, given, state.settings.pseudonym_key.encode())
    doc = await asyncio.to_thread(storage.export_subject, subject, state.cipher)
    profiles: dict[str, Any] = {}
    if state.nc is not None and state.layout_ready:
        try:
            kv = await state.nc.jetstream().key_value(L.PROFILES_BUCKET)
            for identifier in sorted(subject.all):
                try:
                    entry = await kv.get(identifier)
                except Exception:  # no such key
                    continue
                if entry is not None and entry.value:
                    profiles[identifier] = orjson.loads(entry.value)
        except Exception as e:  # the export answers without NATS, and says so
            doc["profiles_error"] = type(e).__name__
    doc["profiles"] = profiles
    doc["held_elsewhere"] = subjects.held_elsewhere(state.settings, sorted(subject.anonymous_ids))
    doc["exported_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    request.state.audit = {"events": len(doc["events"])}
    return Response(
        orjson.dumps(doc),
        media_type="application/json",
        headers={"cache-control": "no-store", "content-disposition": 'attachment; filename="subject-export.json"'},
    )


async def deregister_edge(request: Request) -> Response:
    state = _state(request)
    edge_id = str(request.path_params["edge_id"])
    nc = state.nc
    if nc is None or not state.layout_ready:
        return json_error(503, "nats_unavailable", "the hub is not connected to NATS", RETRY_HEADERS)
    removed = await erasure.deregister_edge(nc.jetstream(), edge_id)
    completed = await asyncio.to_thread(state.erasures.forget_edge, edge_id, time.time())
    state.fleet.edges.pop(edge_id, None)
    state.fleet.registered.discard(edge_id)  # an edge still alive registers again with its next heartbeat
    if not removed and not completed:
        return json_error(404, "unknown_edge", f"edge {edge_id!r} is not registered")
    return JSONResponse({"edge_id": edge_id, "deregistered": removed, "erasures_completed": completed})


async def run_retention(request: Request) -> Response:
    state = _state(request)
    assert state.storage is not None
    deleted = await asyncio.to_thread(retention.run, state.storage, state.retention_policy, datetime.now(UTC))
    request.state.audit = {"deleted": deleted}
    return JSONResponse({"deleted": deleted})


async def audit_entries(request: Request) -> Response:
    state = _state(request)
    try:
        after = int(request.query_params.get("after", "0"))
        limit = query_limit(request, 100, 1000)
    except ValueError:
        return json_error(400, "bad_query", "after and limit are integers")
    entries = await asyncio.to_thread(state.audit.entries, after, limit)
    return JSONResponse({"entries": entries})
