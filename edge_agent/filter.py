"""Filter mode: the agent as nginx's upstream for pages.

GET/HEAD for HTML: shell from the memory cache, the SQLite cache or the origin; slots
decided and filled; answered ``Cache-Control: private`` with an exact
``Content-Length``. Everything else is streamed through untouched. When deciding or
rewriting fails, the page is served with every slot's fallback (reason counted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
import yarl
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Scope, Send

from edge_agent.collect import record_exposures
from edge_agent.decide import slot_kind
from edge_agent.http_cache import cache_key, is_private_request, origin_request_headers, shell_ttl, vary_names, vary_values
from edge_agent.pages import PageContext, decide_slots
from edge_agent.responses import json_error
from edge_agent.rewrite import UndecodableBody, decode_body, is_html, prepare, render
from edge_agent.state import CachedShell, EdgeState
from edge_agent.store import StoredShell

log = logging.getLogger(__name__)

#: Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded either way.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    )
)
#: Request headers dropped when fetching a page we may rewrite (we need the full body).
_PAGE_REQUEST_DROP = HOP_BY_HOP | {
    "host",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "range",
    "if-range",
    "content-length",
}
#: Origin response headers that no longer describe a rewritten page.
_REWRITTEN_DROP = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "etag",
    "last-modified",
    "accept-ranges",
    "cache-control",
    "expires",
    "age",
}
_STREAM_CHUNK = 64 * 1024
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _state(request: Request) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


def _strip_vary_cookie(value: str) -> str:
    return ", ".join(v.strip() for v in value.split(",") if v.strip() and v.strip().lower() != "cookie")


def request_target(scope: Scope) -> str:
    """The request target exactly as the client sent it: the raw path (never decoded,
    so ``%252e`` stays ``%252e`` and nginx's location rules keep their meaning at the
    origin) and the query string."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


def origin_url(state: EdgeState, target: str) -> yarl.URL:
    """The origin URL for ``target``, sent byte for byte (no re-encoding, no dot-segment
    removal)."""
    return yarl.URL(state.settings.origin + target, encoded=True)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def _fetch_shell(state: EdgeState, request: Request, key: str, target: str, private: bool) -> CachedShell | Response:
    """Shell from origin; a non-HTML answer comes back as a ready response. Only the
    operator's listed headers go to the origin; a private request's answer is never
    stored."""
    assert state.http is not None
    s = state.settings
    request_headers = request.headers
    headers = origin_request_headers(request_headers, state.forward_headers, state.own_cookies, _client(request))
    for name in _PAGE_REQUEST_DROP:
        headers.pop(name, None)
    headers["accept-encoding"] = "gzip, deflate"
    started = time.perf_counter()
    resp = await state.http.request(request.method, origin_url(state, target), headers=headers, allow_redirects=False)
    try:
        rheaders = {k.lower(): v for k, v in resp.headers.items()}
        if not is_html(rheaders.get("content-type", "")) or request.method == "HEAD":
            return _stream_response(resp, rheaders)
        declared = int(rheaders.get("content-length", "0") or 0)
        if declared > s.max_page_bytes:
            return _stream_response(resp, rheaders)
        raw = await resp.content.read(s.max_page_bytes + 1)
        if len(raw) > s.max_page_bytes:
            state.metrics.fallback("page_too_large")
            rest = resp.content.iter_chunked(_STREAM_CHUNK)
            return _stream_response(resp, rheaders, prefix=raw, rest=rest)
    except BaseException:
        resp.release()
        raise
    resp.release()
    state.metrics.origin_seconds.observe(time.perf_counter() - started)
    now = time.time()
    names = vary_names(rheaders)
    ttl = 0.0 if private or names is None else shell_ttl(resp.status, rheaders, now)
    single = {k: v for k, v in rheaders.items() if k not in HOP_BY_HOP}
    # multi-valued Set-Cookie must survive: keep them as a list in a side key
    cookies = resp.headers.getall("set-cookie", [])
    try:
        body = decode_body(raw, rheaders.get("content-encoding", ""), s.max_page_bytes)
    except UndecodableBody:
        state.metrics.fallback("undecodable_body")
        return Response(raw, status_code=resp.status, headers={k: v for k, v in single.items() if k != "set-cookie"})
    single.pop("content-encoding", None)
    single.pop("set-cookie", None)
    page = prepare(body, single.get("content-type", "text/html"))
    if page.template.reason:
        state.metrics.fallback(page.template.reason)
    vary = vary_values(names or (), request_headers)
    shell = CachedShell(resp.status, single, page, now + ttl, vary=vary, size=len(body))
    if ttl > 0 and not cookies:
        state.remember_shell(key, shell)
        stored = StoredShell(resp.status, single, body, now + ttl, vary)
        await asyncio.to_thread(state.store.put_shell, key, stored, now, s.shell_store_entries, s.shell_store_bytes)
    elif cookies:
        shell.headers["set-cookie"] = "\n".join(cookies)
    return shell


def _stream_response(
    resp: aiohttp.ClientResponse,
    rheaders: dict[str, str],
    prefix: bytes = b"",
    rest: AsyncIterator[bytes] | None = None,
) -> Response:
    raw_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP
    ]

    async def body() -> AsyncIterator[bytes]:
        try:
            if prefix:
                yield prefix
            async for chunk in rest if rest is not None else resp.content.iter_chunked(_STREAM_CHUNK):
                yield chunk
        finally:
            resp.release()

    out = StreamingResponse(body(), status_code=resp.status)
    out.raw_headers = raw_headers
    if "content-length" not in rheaders and resp.status not in (204, 304):
        out.raw_headers.append((b"transfer-encoding", b"chunked"))
    return out


async def _shell(state: EdgeState, request: Request, key: str, target: str) -> CachedShell | Response:
    private = is_private_request(request.headers, state.own_cookies)
    if not private:
        now = time.time()
        cached = state.shells.get(key)
        if cached is not None and cached.expires > now and cached.matches(request.headers):
            state.metrics.shell("memory")
            return cached
        stored = await asyncio.to_thread(state.store.get_shell, key, now)
        if stored is not None and all(request.headers.get(n, "") == v for n, v in stored.vary):
            state.metrics.shell("sqlite")
            page = prepare(stored.body, stored.headers.get("content-type", "text/html"))
            shell = CachedShell(stored.status, stored.headers, page, stored.expires, vary=stored.vary, size=len(stored.body))
            state.remember_shell(key, shell)
            return shell
    state.metrics.shell("private" if private else "miss")
    return await _fetch_shell(state, request, key, target, private)


def _page(
    state: EdgeState, headers: Mapping[str, str], path: str, query: str, shell: CachedShell
) -> tuple[list[tuple[bytes, bytes]], bytes, PageContext | None]:
    """(raw response headers without Content-Length, body, context whose exposures are
    to be recorded) of one personalized page; fallbacks when anything fails."""
    started = time.perf_counter()
    exposures_ctx: PageContext | None = None
    page = shell.page
    out = shell.page_headers
    if out is None:  # the shell's own headers as they go out with every page: once per shell
        kept = {k: v for k, v in shell.headers.items() if k not in _REWRITTEN_DROP and k != "set-cookie"}
        if "vary" in kept:
            kept["vary"] = _strip_vary_cookie(kept["vary"])
            if not kept["vary"]:
                del kept["vary"]
        kept["content-type"] = page.content_type
        kept["cache-control"] = "private"
        out = shell.page_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept.items()]
        out.extend((b"set-cookie", c.encode("latin-1")) for c in shell.headers.get("set-cookie", "").split("\n") if c)
    raw = list(out)
    try:
        ctx = state.page_context(headers, path, query)
        slots = [(slot.name, slot.attrs) for slot in page.template.slots]
        decision = decide_slots(
            ctx,
            state.bundle,
            slots,
            state.settings.decision_deadline_ms,
            state.models,
            state.bandits,
            shed=state.overload.active,
        )
        exposures_ctx = ctx
        body = render(page, decision.fills())
        if decision.elapsed_us:  # a shed page decided nothing: no time to count
            state.metrics.decision_seconds.observe(decision.elapsed_us / 1e6)
        for name, outcome in decision.outcomes.items():
            state.metrics.decision(name, outcome.reason, slot_kind(state.bundle, name))
            if outcome.html is None:
                state.metrics.fallback(outcome.reason)
        cookie = state.visitor_cookie(ctx, headers.get("x-forwarded-proto") == "https")
        if cookie:
            raw.append((b"set-cookie", cookie.encode("latin-1")))
        if state.settings.debug:
            raw.append((b"x-p13n-debug", decision.explain().encode("latin-1", "replace")))
    except Exception:
        log.warning("personalization failed for %s; serving fallbacks", path, exc_info=True)
        state.metrics.fallback("error")
        body = page.template.render({})
    state.metrics.rewrite_seconds.observe(time.perf_counter() - started)
    return raw, body, exposures_ctx


def _page_response(state: EdgeState, request: Request, shell: CachedShell) -> tuple[Response, PageContext | None]:
    raw, body, ctx = _page(state, request.headers, request.url.path, request.url.query, shell)
    response = Response(body, status_code=shell.status)
    response.raw_headers = [*raw, (b"content-length", str(len(body)).encode("ascii"))]
    return response, ctx


def memory_shell(state: EdgeState, headers: Mapping[str, str], key: str) -> CachedShell | None:
    """The page's shell when the memory cache holds a fresh one for this request (the
    fast path): same host and raw target, same ``Vary`` values, a request that is not
    private."""
    cached = state.shells.get(key)
    if cached is None or cached.expires <= time.time() or not cached.matches(headers):
        return None
    if is_private_request(headers, state.own_cookies):
        return None
    return cached


async def page_asgi(state: EdgeState, scope: Scope, send: Send, shell: CachedShell, headers: Mapping[str, str]) -> None:
    """A GET whose shell is in memory, answered without building a Request or Response
    (the same page as :func:`handle` gives; measured in docs/PERFORMANCE.md)."""
    state.metrics.shell("memory")
    raw, body, ctx = _page(state, headers, scope["path"], scope.get("query_string", b"").decode("latin-1"), shell)
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": shell.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
    if ctx is not None and ctx.exposures:
        await record_exposures(state, ctx, headers)
    state.metrics.request("page", f"{shell.status // 100}xx")


async def _passthrough(state: EdgeState, request: Request, target: str) -> Response:
    """Any other method: proxied with its end-to-end headers, never cached."""
    assert state.http is not None
    headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP and k not in ("host", "x-forwarded-host")}
    prior = request.headers.get("x-forwarded-for", "")
    client = _client(request)
    headers["x-forwarded-for"] = f"{prior}, {client}" if prior and client else (prior or client)
    headers["x-forwarded-host"] = request.headers.get("host", "")
    data = request.stream() if request.method in _BODY_METHODS else None
    resp = await state.http.request(request.method, origin_url(state, target), headers=headers, data=data, allow_redirects=False)
    return _stream_response(resp, {k.lower(): v for k, v in resp.headers.items()})


async def handle(request: Request) -> Response:
    """Entry point for every non-``/_p13n/`` request in filter mode."""
    state = _state(request)
    target = request_target(request.scope)
    try:
        if request.method not in ("GET", "HEAD"):
            response = await _passthrough(state, request, target)
        else:
            key = cache_key(request.headers.get("host", ""), target)
            shell = await _shell(state, request, key, target)
            if isinstance(shell, Response):
                response = shell
            else:
                response, ctx = _page_response(state, request, shell)
                if ctx is not None and ctx.exposures:
                    await record_exposures(state, ctx, request.headers)
    except (ValueError, TypeError) as e:  # a target the origin URL cannot carry
        state.metrics.request("page", "4xx")
        return json_error(400, "bad_request_target", f"cannot forward this request target: {type(e).__name__}")
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        state.metrics.request("page", "5xx")
        log.warning("origin unreachable for %s: %s", request.url.path, e)
        return json_error(502, "origin_unavailable", f"origin fetch failed: {type(e).__name__}")
    state.metrics.request("page", f"{response.status_code // 100}xx")
    return response
