"""SSI mode endpoints: the page's decision (``auth_request``) and slot fragments.

nginx calls ``/_p13n/auth`` once per page (with ``X-Request-Id``): it builds the
page context and answers 204 with the visitor cookie, which nginx forwards. Each
``<!--# include virtual="/_p13n/slot/NAME?rid=…" -->`` then looks the context up
and renders one slot. A fragment that cannot be decided answers 204 with no body,
which makes nginx print the slot's stub (its fallback).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from edge_agent.pages import PageContext, decide_slots
from edge_agent.state import EdgeState
from models.slots import SLOT_NAME_RE

#: Headers nginx sets on subrequests (see the generated config).
RID_HEADER = "x-request-id"
PAGE_HEADER = "x-p13n-page"
_MAX_RID = 64
_PRIVATE = {"cache-control": "private, no-store"}


def _state(request: Request) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


def _page_path(request: Request) -> str:
    page = request.headers.get(PAGE_HEADER) or request.query_params.get("u") or "/"
    return page.split("?", 1)[0][:2048]


def _context(state: EdgeState, request: Request, rid: str) -> PageContext:
    ctx = state.contexts.get(rid) if rid else None
    if ctx is not None:
        state.metrics.context("reused")
        return ctx
    ctx = state.page_context(request.headers, _page_path(request))
    state.metrics.context("built")
    if rid:
        state.contexts.put(rid, ctx)
    return ctx


async def auth(request: Request) -> Response:
    """Compute the page context once; return the visitor cookie for nginx to forward."""
    state = _state(request)
    rid = request.headers.get(RID_HEADER, "")[:_MAX_RID]
    try:
        ctx = _context(state, request, rid)
    except Exception:  # never block a page: nginx lets it through on 2xx
        state.metrics.fallback("error")
        state.metrics.request("auth", "2xx")
        return Response(status_code=204, headers=_PRIVATE)
    headers = dict(_PRIVATE)
    cookie = state.visitor_cookie(ctx, request.headers.get("x-forwarded-proto") == "https")
    if cookie:
        headers["set-cookie"] = cookie
    state.metrics.request("auth", "2xx")
    return Response(status_code=204, headers=headers)


async def slot(request: Request) -> Response:
    """One slot's HTML; 204 (nginx prints the stub) when it falls back."""
    state = _state(request)
    name = request.path_params["name"]
    if not SLOT_NAME_RE.match(name):
        state.metrics.request("slot", "2xx")
        state.metrics.fallback("unknown_slot")
        return Response(status_code=204, headers=_PRIVATE)
    started = time.perf_counter()
    rid = (request.query_params.get("rid") or request.headers.get(RID_HEADER, ""))[:_MAX_RID]
    overrides = {k: v for k, v in request.query_params.items() if k not in ("rid", "u")}
    try:
        ctx = _context(state, request, rid)
        decision = decide_slots(ctx, state.bundle, [(name, overrides)], state.settings.decision_deadline_ms)
        outcome = decision.outcomes[name]
    except Exception:
        state.metrics.fallback("error")
        state.metrics.request("slot", "2xx")
        return Response(status_code=204, headers=_PRIVATE)
    state.metrics.decision(name, outcome.reason)
    state.metrics.rewrite_seconds.observe(time.perf_counter() - started)
    state.metrics.request("slot", "2xx")
    headers = dict(_PRIVATE)
    if state.settings.debug:
        headers["x-p13n-debug"] = decision.explain()
    if outcome.html is None:
        state.metrics.fallback(outcome.reason)
        return Response(status_code=204, headers=headers)
    return Response(outcome.html, media_type="text/html; charset=utf-8", headers=headers)
