"""SSI mode endpoints: the page's decision (``auth_request``) and slot fragments.

nginx calls ``/_p13n/auth`` once per page for visitors without a valid visitor cookie
(with ``X-Request-Id``): it builds the page context and answers 204 with the cookie,
which nginx forwards. Each ``<!--# include virtual="/_p13n/slot/NAME?rid=…" -->``
then looks the context up by request id (building it on first use) and renders one
slot. A fragment that cannot be decided answers 204 with no body, which makes nginx
print the slot's stub (its fallback).

These run several times per page, so they are plain ASGI handlers over the raw
scope rather than Starlette endpoints (measured in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import Receive, Scope, Send

from edge_agent import class_cookie
from edge_agent.collect import record_exposures
from edge_agent.decide import decide_page, slot_kind
from edge_agent.pages import PageContext, decide_slots
from edge_agent.slot_fallbacks import MAX_ID
from edge_agent.state import EdgeState
from models.slots import SLOT_NAME_RE

log = logging.getLogger(__name__)

#: Headers nginx sets on subrequests (see the generated config).
RID_HEADER = "x-request-id"
PAGE_HEADER = "x-p13n-page"
SLOT_PREFIX = "/_p13n/slot/"
AUTH_PATH = "/_p13n/auth"
_MAX_RID = 64
_MAX_QUERY = 4096
_PRIVATE = (b"cache-control", b"private, no-store")
_NO_OVERRIDES: dict[str, str] = {}
#: Outcomes of a shareable slot nginx may keep (a function of the class alone).
SHAREABLE_OUTCOMES = ("variant", "default")
#: One-round-trip SSI: most slots decided per auth call, largest fragment per header.
MAX_HEADER_SLOTS = 32
MAX_HEADER_FRAGMENT = 16 * 1024


def header_safe(html: str) -> bytes:
    """A fragment as a header value: UTF-8, line breaks folded to spaces."""
    return html.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").encode("utf-8")


_HTML = (b"content-type", b"text/html; charset=utf-8")


def parse_query(raw: bytes) -> dict[str, str]:
    """``a=1&b=x%20y`` → dict; first value wins; capped at :data:`_MAX_QUERY` bytes."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw[:_MAX_QUERY].decode("latin-1").split("&"):
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        if key and key not in out:
            out[key] = value
    return out


def header_map(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _page(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str, str]:
    """The page's (path, query)."""
    page = headers.get(PAGE_HEADER) or query.get("u") or "/"
    path, _, page_query = page.partition("?")
    return path[:2048], page_query[:2048]


def _context(state: EdgeState, headers: Mapping[str, str], query: Mapping[str, str], rid: str, keep: bool = True) -> PageContext:
    """The page's context: the one stored under ``rid`` by an earlier request of the same
    page, else built now (and stored for the page's next requests when ``keep``)."""
    ctx = state.contexts.get(rid) if rid else None
    if ctx is not None:
        state.metrics.context("reused")
        return ctx
    ctx = state.page_context(headers, *_page(headers, query), request_id=rid)
    state.metrics.context("built")
    if rid and keep:
        state.contexts.put(rid, ctx)
    return ctx


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def auth(state: EdgeState, scope: Scope, receive: Receive, send: Send) -> None:
    """Compute the page context once; return the visitor cookie for nginx to forward.

    With ``?slots=a,b`` (one-round-trip SSI) the slots are decided here too and returned
    as ``X-P13N-Slot-<name>`` headers that nginx echoes into the page.
    """
    headers_out = [_PRIVATE]
    try:
        headers = header_map(scope)
        rid = headers.get(RID_HEADER, "")[:_MAX_RID]
        query = parse_query(scope["query_string"])
        wanted = [n for n in query.get("slots", "").split(",")[:MAX_HEADER_SLOTS] if SLOT_NAME_RE.match(n)]
        # one-round-trip pages decide everything here: no fragment request follows, so
        # the context is not kept (thousands of live contexts lengthen every full GC)
        ctx = _context(state, headers, query, rid, keep=not wanted)
        cookie = state.visitor_cookie(ctx, headers.get("x-forwarded-proto") == "https")
        if cookie:
            headers_out.append((b"set-cookie", cookie.encode("latin-1")))
        if wanted:
            decision = decide_slots(
                ctx,
                state.bundle,
                [(n, _NO_OVERRIDES) for n in wanted],
                state.settings.decision_deadline_ms,
                state.models,
                state.bandits,
                shed=state.overload.active,
            )
            if ctx.exposures:
                await record_exposures(state, ctx, headers)
            for name in wanted:
                outcome = decision.outcomes[name]
                state.metrics.decision(name, outcome.reason, slot_kind(state.bundle, name))
                if outcome.html is None:
                    state.metrics.fallback(outcome.reason)
                    continue
                value = header_safe(outcome.html)
                if len(value) > MAX_HEADER_FRAGMENT:
                    state.metrics.fallback("fragment_too_large")
                    continue
                headers_out.append((b"x-p13n-slot-" + name.encode("ascii"), value))
    except Exception:  # never block a page: nginx lets it through on 2xx
        log.warning("auth failed; the page renders without a visitor context", exc_info=True)
        state.metrics.fallback("error")
    state.metrics.request("auth", "2xx")
    await _send(send, 204, headers_out)


async def _shared_slot(
    state: EdgeState, name: str, attrs: dict[str, Any], overrides: dict[str, str], scope: Scope, send: Send, fb: str
) -> None:
    """A shareable slot decided from its class alone (edge_agent/shared_fragments.py):
    what nginx stores is what anyone with the same key gets. Only a decided fragment is
    cacheable; a fallback is answered ``no-store`` like any other."""
    bundle = state.bundle
    decision = decide_page(bundle, attrs, [(name, overrides)], state.settings.decision_deadline_ms, held=False)
    outcome = decision.outcomes[name]
    state.metrics.decision(name, outcome.reason, slot_kind(bundle, name))
    if outcome.html is None or outcome.reason not in SHAREABLE_OUTCOMES:
        state.metrics.fallback(outcome.reason)
        await _fallback(state, scope, send, [_PRIVATE], fb)
        return
    state.metrics.shared("filled")
    if scope["method"] == "HEAD":  # no body: nothing nginx may keep
        await _send(send, 200, [_HTML, _PRIVATE])
        return
    ttl = str(int(state.settings.shared_fragment_ttl_s)).encode("ascii")
    await _send(send, 200, [_HTML, (b"x-accel-expires", ttl)], outcome.html.encode("utf-8"))


async def _fallback(state: EdgeState, scope: Scope, send: Send, headers_out: list[tuple[bytes, bytes]], fb: str) -> None:
    """The slot's fallback: its HTML when the include names one the agent knows
    (edge_agent/slot_fallbacks.py), else 204 and nginx prints the include's stub."""
    html = state.fallbacks.get(fb[:MAX_ID]) if fb else None
    if html is None:
        await _send(send, 204, headers_out)
        return
    headers_out.append(_HTML)
    await _send(send, 200, headers_out, b"" if scope["method"] == "HEAD" else html)


async def slot(state: EdgeState, scope: Scope, receive: Receive, send: Send) -> None:
    """One slot's HTML; its fallback (or 204: nginx prints the stub) when it falls back."""
    started = time.perf_counter()
    name = scope["path"][len(SLOT_PREFIX) :]
    state.metrics.request("slot", "2xx")
    query = parse_query(scope["query_string"])
    fb = query.get("fb", "")
    if not SLOT_NAME_RE.match(name):
        state.metrics.fallback("unknown_slot")
        await _fallback(state, scope, send, [_PRIVATE], fb)
        return
    headers_out = [_PRIVATE]
    if state.overload.active:  # shed: the fallback at once, no context, no model work
        state.metrics.decision(name, "overload", slot_kind(state.bundle, name))
        state.metrics.fallback("overload")
        await _fallback(state, scope, send, headers_out, fb)
        return
    try:
        headers = header_map(scope)
        overrides = {k: v for k, v in query.items() if k not in ("rid", "u", "fb")}
        codec = state.shared
        if codec is not None and name in codec.plan.slots:
            attrs = class_cookie.shared_attrs(state, codec, headers, _page(headers, query)[1])
            if attrs is not None:
                await _shared_slot(state, name, attrs, overrides, scope, send, fb)
                return
            state.metrics.shared("live")
        rid = (query.get("rid") or headers.get(RID_HEADER, ""))[:_MAX_RID]
        ctx = _context(state, headers, query, rid)
        decision = decide_slots(
            ctx, state.bundle, [(name, overrides)], state.settings.decision_deadline_ms, state.models, state.bandits
        )
        if ctx.exposures:
            await record_exposures(state, ctx, headers)
        outcome = decision.outcomes[name]
    except Exception:
        log.warning("slot %s failed; it shows its fallback", name, exc_info=True)
        state.metrics.fallback("error")
        await _fallback(state, scope, send, headers_out, fb)
        return
    state.metrics.decision(name, outcome.reason, slot_kind(state.bundle, name))
    state.metrics.rewrite_seconds.observe(time.perf_counter() - started)
    if state.settings.debug:
        headers_out.append((b"x-p13n-debug", decision.explain().encode("latin-1", "replace")))
    if outcome.html is None:
        state.metrics.fallback(outcome.reason)
        await _fallback(state, scope, send, headers_out, fb)
        return
    headers_out.append(_HTML)
    body = b"" if scope["method"] == "HEAD" else outcome.html.encode("utf-8")
    await _send(send, 200, headers_out, body)
