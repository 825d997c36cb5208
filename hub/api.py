"""Hub HTTP endpoints for data and the fleet: events, stats, edges, bundles, marts.

Authentication and roles are applied around them by :mod:`hub.guard`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import bundles, fleet
from hub.erasure import registered_edges
from hub.ingest.consumer import consumer_lag
from hub.requests import query_limit
from hub.responses import json_error
from models import nats_layout as L
from models.bundle import MAX_BUNDLE_BYTES, BundleRejected
from models.http_body import read_body
from models.pseudonym import pseudonym

if TYPE_CHECKING:
    from hub.state import HubState

#: Largest body and batch accepted by POST /v1/events.
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 1000


async def post_events(request: Request) -> Response:
    state: HubState = request.app.state.hub
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return json_error(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return json_error(400, "malformed_json", f"the body is not valid JSON: {e}"[:300])
    events = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        return json_error(400, "no_events", 'expected {"events": [...]} or a JSON array of events')
    if len(events) > MAX_BATCH_EVENTS:
        return json_error(400, "too_many_events", f"at most {MAX_BATCH_EVENTS} events per batch, got {len(events)}")
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
    return JSONResponse(await stats_view(request.app.state.hub))


async def stats_view(state: HubState) -> dict[str, Any]:
    """Counters, table rows and the ingest consumer (``GET /v1/stats``, the console)."""
    assert state.storage is not None
    counters = await asyncio.to_thread(state.storage.counters)
    rows = await asyncio.to_thread(state.storage.table_rows)
    lag: dict[str, Any] = {}
    if state.nc is not None and state.layout_ready:
        try:
            lag = await consumer_lag(state.nc.jetstream())
        except Exception as e:  # stats must answer even when NATS is away
            lag = {"error": type(e).__name__}
    return {
        "received": counters.get("received", 0),
        "accepted": counters.get("accepted", 0),
        "duplicates_dropped": counters.get("duplicates", 0),
        # late events of erased subjects, dropped (never stored, never dead-lettered)
        "suppressed": counters.get("suppressed", 0),
        "dead_letters": {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("dead:")},
        "rows": rows,
        "consumer": {
            "batches": state.consumer.batches,
            "messages": state.consumer.messages,
            "malformed_messages": state.consumer.malformed_messages,
            "isolated_messages": state.consumer.isolated_messages,
            "dead_lettered_messages": state.consumer.dead_lettered_messages,
            "max_deliveries": state.consumer.max_deliveries,
            "delivery_bound": L.MAX_EVENT_DELIVERIES,
            "last_error": state.consumer.last_error,
            **lag,
        },
    }


async def edges(request: Request) -> Response:
    """The fleet: each edge's last heartbeat, staleness and profile sync lag."""
    return JSONResponse(await edges_view(request.app.state.hub))


async def edges_view(state: HubState) -> dict[str, Any]:
    """``GET /v1/edges`` (and the console's fleet page)."""
    view = state.fleet.view(state.settings.edge_stale_s)
    last_seq = None
    registered: list[str] | None = None
    if state.nc is not None and state.layout_ready:
        try:
            js = state.nc.jetstream()
            info = await js.stream_info(f"KV_{L.PROFILES_BUCKET}")
            last_seq = int(info.state.last_seq)
            registered = await registered_edges(js)
        except Exception:  # the view answers without the lag when NATS is away
            last_seq = None
    for edge in view:
        seq = edge.get("profiles_seq")
        edge["profile_sync_lag"] = max(0, last_seq - int(seq)) if last_seq is not None and isinstance(seq, int) else None
    return {
        "edges": view,
        "stale": sum(1 for e in view if e["stale"]),
        "profiles_last_seq": last_seq,
        # edges that must acknowledge every erasure (they hold an erasure consumer)
        "erasure_registered": registered,
    }


async def jobs(request: Request) -> Response:
    """``GET /v1/jobs``: each background job's runs, failures, last success and error,
    next run (hub/jobs.py)."""
    state: HubState = request.app.state.hub
    lease = state.lease.view() if state.lease is not None else None
    return JSONResponse({"jobs": state.jobs.view(), "nats_ready": state.jobs.ready.is_set(), "lease": lease})


def _nats_down() -> Response:
    return json_error(503, "nats_unavailable", "the hub is not connected to NATS", {"retry-after": "5"})


async def activate_bundle(request: Request) -> Response:
    """Make a stored bundle version the live one on every edge (rollback included)."""
    state: HubState = request.app.state.hub
    if state.nc is None or not state.layout_ready:
        return _nats_down()
    version = int(request.path_params["version"])
    return await _make_live(request, state, version, f"bundle version {version} is not stored")


async def rollback_bundle(request: Request) -> Response:
    """Make the version that was live before the current one live again."""
    state: HubState = request.app.state.hub
    if state.nc is None or not state.layout_ready:
        return _nats_down()
    target = await fleet.previous_version(state.nc)
    if target is None:
        return json_error(409, "nothing_to_roll_back", "no earlier bundle version was ever live")
    return await _make_live(request, state, target, f"the previous version {target} is no longer stored")


async def _make_live(request: Request, state: HubState, version: int, missing: str) -> Response:
    assert state.nc is not None
    try:
        pointer = await fleet.activate(state.nc, version)
    except KeyError:
        return json_error(404, "unknown_bundle", missing)
    request.state.audit.update(version=version, sha256=pointer["sha256"])
    return JSONResponse(pointer)


async def list_bundles(request: Request) -> Response:
    """``GET /v1/bundles``: stored versions with their digests, the live pointer, and
    the next free version number (for ``p13n train --version``)."""
    state: HubState = request.app.state.hub
    if state.nc is None or not state.layout_ready:
        return _nats_down()
    return JSONResponse(await bundles_view(state))


async def bundles_view(state: HubState) -> dict[str, Any]:
    """Stored bundles, the live pointer, the next version (NATS must be connected)."""
    assert state.nc is not None
    items = await bundles.stored(state.nc.jetstream())
    return {
        "bundles": items,
        "current": await fleet.current_pointer(state.nc),
        "next_version": max((b["version"] for b in items), default=0) + 1,
    }


async def download_bundle(request: Request) -> Response:
    """``GET /v1/bundles/{version}``: the stored bundle's bytes (a signed tar), e.g. for
    ``p13n train --from-hub --push`` to compare its new bundle with the live one."""
    state: HubState = request.app.state.hub
    if state.nc is None or not state.layout_ready:
        return _nats_down()
    version = int(request.path_params["version"])
    data = await bundles.fetch(state.nc.jetstream(), version)
    if data is None:
        return json_error(404, "not_found", f"no bundle v{version} is stored")
    request.state.audit.update(version=version)
    return Response(
        data,
        media_type="application/x-tar",
        headers={"content-disposition": f'attachment; filename="{bundles.bundle_name(version)}"'},
    )


async def upload_bundle(request: Request) -> Response:
    """``POST /v1/bundles[?activate=false]``: a signed bundle (the tar as the body),
    verified with ``P13N_HUB_BUNDLE_PUBLIC_KEY``, stored, and made live unless
    ``activate=false``. A version already stored with other bytes is a 409."""
    state: HubState = request.app.state.hub
    key_file = state.settings.bundle_public_key
    if not key_file:
        return json_error(503, "no_public_key", "set P13N_HUB_BUNDLE_PUBLIC_KEY so the hub can verify bundles")
    if state.nc is None or not state.layout_ready:
        return _nats_down()
    activate = request.query_params.get("activate", "true").lower()
    if activate not in ("true", "false"):
        return json_error(400, "bad_query", "activate is true or false")
    body = await read_body(request, MAX_BUNDLE_BYTES)
    if body is None:
        return json_error(413, "body_too_large", f"a bundle is at most {MAX_BUNDLE_BYTES} bytes")
    try:
        public_key = await asyncio.to_thread(Path(key_file).read_bytes)
    except OSError as e:
        return json_error(503, "no_public_key", f"cannot read P13N_HUB_BUNDLE_PUBLIC_KEY: {e.strerror}")
    js = state.nc.jetstream()
    try:
        entry = await bundles.upload(js, body, public_key)
    except BundleRejected as e:
        request.state.audit.update(rejected=e.reason)
        return json_error(400, f"bundle_{e.reason}", str(e)[:300])
    except bundles.VersionTaken as e:
        request.state.audit.update(version=e.version, refused="version_taken")
        return json_error(409, "version_taken", str(e))
    request.state.audit.update(version=entry["version"], sha256=entry["sha256"])
    if request.query_params.get("forced") == "true":  # made although it failed the training gate
        request.state.audit.update(forced=True)
    if activate == "true":
        pointer = await fleet.activate(state.nc, int(entry["version"]))
        entry = {**entry, "activated": True, "revision": pointer["revision"]}
    return JSONResponse(entry, status_code=201 if entry["stored"] else 200)


async def item_popularity(request: Request) -> Response:
    """``GET /v1/marts/items?limit=N``: the most popular items (aggregates, no subjects)."""
    state: HubState = request.app.state.hub
    assert state.storage is not None
    try:
        limit = query_limit(request, 20, 1000)
    except ValueError:
        return json_error(400, "bad_query", "limit is an integer")

    return JSONResponse({"items": await asyncio.to_thread(state.storage.top_items, limit)})
