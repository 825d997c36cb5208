"""Collection endpoints: ``POST /_p13n/collect`` (JSON batch) and ``GET /_p13n/px.gif``.

Every accepted event is in the SQLite outbox before the answer goes out. Bad input gets
a clear 4xx (403 from another site, 413 body too large, 400 malformed JSON or too many events) and one bad
event never rejects its batch-mates: the 202 lists each event as accepted or rejected
with a reason. A full outbox answers 503 with ``Retry-After``. Without ``analytics``
consent nothing about the visitor is stored (``consent`` events, the proof of a choice,
are the exception).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from edge_agent import class_cookie, session_sync
from edge_agent.csrf import cross_site_reason
from edge_agent.enrich import RequestFacts, enrich
from edge_agent.identity import IdentityRejected, header_user
from edge_agent.pages import new_visitor_id, parse_cookies
from edge_agent.state import EdgeState
from models import consent as consent_rules
from models.contracts import validate
from models.errors import error_body
from models.http_body import read_body
from models.nats_layout import events_subject
from models.pseudonym import valid_visitor_id
from models.session import apply_event, url_item

#: Largest request body accepted by /_p13n/collect (bytes).
MAX_BODY_BYTES = 256 * 1024
#: Most events in one batch.
MAX_BATCH_EVENTS = 100
#: Pixel query parameters become event fields; at most this many are read.
MAX_PIXEL_PARAMS = 32
RETRY_AFTER_S = 5
GIF = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_PIXEL_HEADERS = {"cache-control": "no-store, no-cache, must-revalidate, max-age=0", "pragma": "no-cache", "expires": "0"}
_PIXEL_FIELDS = {
    "e": "type",
    "url": "url",
    "ref": "referrer",
    "id": "event_id",
    "item": "item_id",
    "campaign": "campaign",
    "order": "order_id",
}


def _state(request: Request) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


def _visitor(state: EdgeState, headers: Mapping[str, str]) -> tuple[frozenset[str], str, str]:
    """(consent, visitor id usable for this consent, visitor id the cookie names)."""
    cookies = parse_cookies(headers.get("cookie", ""))
    consent = consent_rules.resolve(headers, cookies, state.settings.default_consent, state.tcf)
    raw = cookies.get(state.settings.cookie_name, "")
    raw = raw if valid_visitor_id(raw) else ""
    return consent, raw if consent_rules.may_identify(consent) else "", raw


def issue_visitor(state: EdgeState, headers: Mapping[str, str]) -> tuple[Mapping[str, str], bytes | None]:
    """(headers naming the visitor, ``Set-Cookie`` value or None).

    A visitor whose consent allows an id (analytics or personalization) but who has no
    visitor cookie yet — typically the first request after accepting a consent banner
    on a page served under ``necessary`` — gets one now, and this request's events are
    already attributed to it. Without that, a visitor's first page view, clicks and
    consent record would be stored with no subject and no profile would reach the edge
    until a later page issued the cookie."""
    consent, _, cookie_visitor = _visitor(state, headers)
    if cookie_visitor or not consent_rules.may_identify(consent):
        return headers, None
    visitor = new_visitor_id()
    name = state.settings.cookie_name
    prior = headers.get("cookie", "")
    named = {**headers, "cookie": f"{name}={visitor}; {prior}" if prior else f"{name}={visitor}"}
    secure = headers.get("x-forwarded-proto") == "https"
    state.metrics.visitor_issued()
    return named, state.visitor_cookie_for(visitor, secure).encode("latin-1")


def _proven_identity(state: EdgeState, raw: dict[str, Any], header_id: str) -> tuple[dict[str, Any], str]:
    """(the event with a proven user id or none, reason it is refused or ``""``).

    A ``user_token`` is verified and replaced by the id it proves; a ``user_id`` that
    neither the token nor the trusted user header proves is dropped (counted), and an
    ``identify`` event without proof is refused: a visitor cannot claim someone else."""
    proven = header_id
    if "user_token" in raw:
        token = raw["user_token"]
        raw = {k: v for k, v in raw.items() if k != "user_token"}  # a credential: never stored
        try:
            proven = state.identity.verify(token)
        except IdentityRejected as e:
            return raw, e.reason
    claimed = raw.get("user_id")
    if claimed is not None and claimed != proven:
        if raw.get("type") == "identify":
            return raw, "unproven_identity"
        raw = {k: v for k, v in raw.items() if k != "user_id"}
        state.metrics.identity_rejected("unproven_claim")
    if proven:
        raw = {**raw, "user_id": proven}
    elif raw.get("type") == "identify":
        return raw, "unproven_identity"
    return raw, ""


def update_session(state: EdgeState, visitor: str, consent: frozenset[str], events: list[dict[str, Any]]) -> None:
    """Fold accepted events into the visitor's live session (personalization consent only)."""
    if not visitor or "personalization" not in consent or not events:
        return
    session = state.session(visitor, create=True)
    assert session is not None
    now = time.time()
    categories = state.category_of
    for event in events:
        apply_event(session, event, categories, url_item, now)
    if state.coherence is not None:  # other workers serve this visitor too: write it now
        session_sync.note(state, visitor, events, now)
    else:
        state.dirty_sessions.add(visitor)


def prepare_events(
    state: EdgeState, raw_events: list[Any], headers: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(results per event, accepted enriched events).

    Without ``analytics`` consent an event is never stored; with ``personalization``
    consent it still updates the visitor's live session on this edge (status
    ``session_only``), so in-session personalization works without analytics."""
    consent, visitor, cookie_visitor = _visitor(state, headers)
    analytics = "analytics" in consent
    personalization = "personalization" in consent
    results: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    session_only: list[dict[str, Any]] = []
    s = state.settings
    key = s.pseudonym_key.encode()
    facts = RequestFacts(headers, s.geo_header)
    suppressed, tokenizer = state.store.suppressed, state.store.tokenizer
    erased = bool(suppressed) and tokenizer is not None and tokenizer.any_in((cookie_visitor,), suppressed)
    header_id = header_user(headers.get(s.user_header, ""))  # EdgeApp strips it from untrusted peers
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            results.append({"index": index, "status": "rejected", "reason": "not_an_object"})
            continue
        if erased:  # an erased subject's late events are dropped, never stored
            results.append({"index": index, "status": "rejected", "reason": "erased_subject"})
            continue
        raw, refused = _proven_identity(state, raw, header_id)
        if refused:
            state.metrics.identity_rejected(refused)
            results.append({"index": index, "status": "rejected", "reason": refused})
            continue
        local = not analytics and raw.get("type") != "consent"
        if local and not personalization:
            results.append({"index": index, "status": "rejected", "reason": "no_consent"})
            continue
        event = enrich(
            raw,
            headers,
            edge_id=s.edge_id,
            # a consent record names the visitor it applies to, even when it withdraws consent
            visitor_id=cookie_visitor if raw.get("type") == "consent" else visitor,
            geo_header=s.geo_header,
            pseudonym_key=key,
            facts=facts,
        )
        verdict = validate(event)
        if not verdict.ok:
            results.append({"index": index, "status": "rejected", "reason": verdict.reason, "detail": verdict.detail})
            continue
        if suppressed and tokenizer is not None and tokenizer.any_in((event.get("user_id"),), suppressed):
            results.append({"index": index, "status": "rejected", "reason": "erased_subject"})
            continue
        if local:
            results.append({"index": index, "status": "session_only", "reason": "no_consent"})
            session_only.append(event)
            continue
        results.append({"index": index, "status": "accepted", "event_id": event["event_id"]})
        accepted.append(event)
    update_session(state, visitor, consent, accepted + session_only)
    return results, accepted


async def store(state: EdgeState, events: list[dict[str, Any]]) -> bool:
    """Durably append to the outbox (with several workers, with the sessions changed);
    False when the outbox is full."""
    if not events:
        if state.pending:
            await state.outbox_writer.write([])
        return True
    coh = state.coherence
    if (coh.outbox if coh is not None else state.outbox_depth) + len(events) > state.settings.outbox_max_events:
        return False
    # one outbox row per request: a JSON array of its events
    row = (str(events[0]["event_id"]), events_subject(state.settings.edge_id), orjson.dumps(events), len(events))
    if coh is not None:  # the edge's depth is shared by its workers
        await state.outbox_writer.write([row])
        state.outbox_depth = coh.add_outbox(len(events))
        state.outbox_wakeup.set()
        return True
    state.outbox_depth += len(events)
    try:
        await state.outbox_writer.write([row])
    except BaseException:
        state.outbox_depth -= len(events)
        raise
    state.outbox_wakeup.set()
    return True


async def handle_batch(
    state: EdgeState, body: bytes | None, headers: Mapping[str, str]
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """(status, JSON body, extra headers) for one collect request; ``body`` is None when
    it exceeded :data:`MAX_BODY_BYTES`."""
    m = state.metrics
    refused = cross_site_reason(headers, frozenset(state.settings.allowed_origins))
    if refused:
        m.collect_rejected("cross_site")
        return _error(403, "cross_site", refused)
    if body is None:
        m.collect_rejected("too_large")
        return _error(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        m.collect_rejected("malformed_json")
        return _error(400, "malformed_json", f"the body is not valid JSON: {e}"[:300])
    raw_events = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(raw_events, list):
        m.collect_rejected("no_events")
        return _error(400, "no_events", 'expected {"events": [...]} or a JSON array of events')
    if len(raw_events) > MAX_BATCH_EVENTS:
        m.collect_rejected("too_many_events")
        return _error(400, "too_many_events", f"at most {MAX_BATCH_EVENTS} events per batch, got {len(raw_events)}")
    named, issued = issue_visitor(state, headers)
    results, accepted = prepare_events(state, raw_events, named)
    if not await store(state, accepted):
        m.collect_rejected("outbox_full")
        status, payload, extra = _error(503, "outbox_full", "the edge is buffering too many events; retry later")
        return status, payload, [*extra, (b"retry-after", str(RETRY_AFTER_S).encode())]
    local = sum(1 for r in results if r["status"] == "session_only")
    m.events("accepted", len(accepted))
    m.events("session_only", local)  # shaped this visit on the edge, never stored
    m.events("rejected", len(results) - len(accepted) - local)
    payload = orjson.dumps({"accepted": len(accepted), "rejected": len(results) - len(accepted), "results": results})
    cookies = [(b"set-cookie", issued)] if issued else []
    refreshed = class_cookie.issue(state, named)  # the session just changed: so may the class
    if refreshed is not None:
        cookies.append((b"set-cookie", refreshed))
    return 202, payload, cookies


def _error(status: int, reason: str, detail: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, orjson.dumps(error_body(status, reason, detail)), []


_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


async def collect_asgi(state: EdgeState, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /_p13n/collect`` as a plain ASGI handler (the SDK's hot path)."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    declared = headers.get("content-length", "")
    body: bytes | None = None
    if not (declared.isdigit() and int(declared) > MAX_BODY_BYTES):
        chunks = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks += message.get("body", b"")
            more = message.get("more_body", False)
            if len(chunks) > MAX_BODY_BYTES:
                break
        body = bytes(chunks) if len(chunks) <= MAX_BODY_BYTES else None
    status, payload, extra = await handle_batch(state, body, headers)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def collect(request: Request) -> Response:
    """The same endpoint through Starlette (the agent dispatches POSTs to :func:`collect_asgi`)."""
    status, payload, extra = await handle_batch(_state(request), await read_body(request, MAX_BODY_BYTES), request.headers)
    response = Response(payload, status_code=status, media_type="application/json", headers={"cache-control": "no-store"})
    for name, value in extra:
        response.headers.append(name.decode(), value.decode("latin-1"))
    return response


async def pixel(request: Request) -> Response:
    """Always a 1×1 GIF, never cached; the event is stored when it is valid."""
    state = _state(request)
    params = dict(list(request.query_params.items())[:MAX_PIXEL_PARAMS])
    event: dict[str, Any] = {"type": params.pop("e", "page_view")}
    for short, name in _PIXEL_FIELDS.items():
        if short in params and short != "e":
            event[name] = params.pop(short)
    if event["type"] == "page_view" and "url" not in event:
        event["url"] = request.headers.get("referer", "")
    utm = {k: v for k, v in params.items() if k.startswith("utm_")}
    if utm:
        event["url"] = (
            (event.get("url") or "https://pixel.invalid/")
            + ("&" if "?" in event.get("url", "") else "?")
            + "&".join(f"{k}={v}" for k, v in utm.items())
        )
    try:
        _, accepted = prepare_events(state, [event], request.headers)
        stored = await store(state, accepted)
        state.metrics.events("accepted" if accepted and stored else "rejected", 1)
    except Exception:  # the pixel answers whatever happens
        state.metrics.collect_rejected("error")
    return Response(GIF, media_type="image/gif", headers=_PIXEL_HEADERS)


async def record_exposures(state: EdgeState, ctx: Any, headers: Mapping[str, str]) -> None:
    """Experiment exposures of a page go to the outbox (analytics consent only)."""
    if not ctx.exposures:
        return
    exposures, ctx.exposures = ctx.exposures, []
    if "analytics" not in ctx.consent:
        return
    _, accepted = prepare_events(state, exposures, headers)
    if not await store(state, accepted):
        state.metrics.collect_rejected("outbox_full")
        return
    for exposure in accepted:
        state.metrics.exposure(str(exposure.get("experiment", "")), str(exposure.get("variant", "")))
