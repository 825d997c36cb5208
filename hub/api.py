"""Hub HTTP endpoints for data: ``POST /v1/events`` (API key) and ``GET /v1/stats``."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import fleet
from hub.ingest.consumer import consumer_lag
from models import nats_layout as L
from models.errors import error_body
from models.pseudonym import pseudonym

if TYPE_CHECKING:
    from hub.app import HubState

#: Largest body and batch accepted by POST /v1/events.
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 1000


def _error(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse(error_body(status, reason, detail), status_code=status)


def _authorized(request: Request, keys: tuple[str, ...]) -> bool:
    offered = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    return bool(offered) and any(hmac.compare_digest(offered, k) for k in keys)


async def post_events(request: Request) -> Response:
    state: HubState = request.app.state.hub
    if not _authorized(request, state.settings.api_keys):
        return _error(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as e:
        return _error(400, "malformed_json", f"the body is not valid JSON: {e}"[:300])
    events = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        return _error(400, "no_events", 'expected {"events": [...]} or a JSON array of events')
    if len(events) > MAX_BATCH_EVENTS:
        return _error(400, "too_many_events", f"at most {MAX_BATCH_EVENTS} events per batch, got {len(events)}")
    received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    key = state.settings.pseudonym_key.encode()
    prepared: list[Any] = []
    for raw in events:
        if isinstance(raw, dict):
            event = dict(raw)
            event.setdefault("event_id", uuid.uuid4().hex)
            event["received_at"] = received
            event["edge"] = "api"
            if isinstance(event.get("user_id"), str) and event["user_id"]:
                event["user_id"] = pseudonym(event["user_id"], key)
            prepared.append(event)
        else:
            prepared.append(raw)
    assert state.storage is not None
    report = await asyncio.to_thread(state.storage.ingest, prepared, "api", received)
    return JSONResponse(
        {
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "rejected": sum(report.dead.values()),
            "results": report.results,
        },
        status_code=202,
    )


async def stats(request: Request) -> Response:
    state: HubState = request.app.state.hub
    assert state.storage is not None
    counters = await asyncio.to_thread(state.storage.counters)
    rows = await asyncio.to_thread(state.storage.table_rows)
    lag: dict[str, Any] = {}
    if state.nc is not None and state.layout_ready:
        try:
            lag = await consumer_lag(state.nc.jetstream())
        except Exception as e:  # stats must answer even when NATS is away
            lag = {"error": type(e).__name__}
    return JSONResponse(
        {
            "received": counters.get("received", 0),
            "accepted": counters.get("accepted", 0),
            "duplicates_dropped": counters.get("duplicates", 0),
            "dead_letters": {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("dead:")},
            "rows": rows,
            "consumer": {
                "batches": state.consumer.batches,
                "messages": state.consumer.messages,
                "malformed_messages": state.consumer.malformed_messages,
                "last_error": state.consumer.last_error,
                **lag,
            },
        }
    )


async def edges(request: Request) -> Response:
    """The fleet: each edge's last heartbeat, staleness and profile sync lag."""
    state: HubState = request.app.state.hub
    view = state.fleet.view(state.settings.edge_stale_s)
    last_seq = None
    if state.nc is not None and state.layout_ready:
        try:
            info = await state.nc.jetstream().stream_info(f"KV_{L.PROFILES_BUCKET}")
            last_seq = int(info.state.last_seq)
        except Exception:  # the view answers without the lag when NATS is away
            last_seq = None
    for edge in view:
        seq = edge.get("profiles_seq")
        edge["profile_sync_lag"] = max(0, last_seq - int(seq)) if last_seq is not None and isinstance(seq, int) else None
    return JSONResponse({"edges": view, "stale": sum(1 for e in view if e["stale"]), "profiles_last_seq": last_seq})


async def activate_bundle(request: Request) -> Response:
    """Make a stored bundle version the live one on every edge (rollback included)."""
    state: HubState = request.app.state.hub
    if state.nc is None or not state.layout_ready:
        return _error(503, "nats_unavailable", "the hub is not connected to NATS")
    version = int(request.path_params["version"])
    try:
        pointer = await fleet.activate(state.nc, version)
    except KeyError:
        return _error(404, "unknown_bundle", f"bundle version {version} is not stored")
    return JSONResponse(pointer)
