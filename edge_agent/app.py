"""The edge agent's ASGI app: ``create_app(settings)``; the lifespan owns resources."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Message, Receive, Scope, Send

from edge_agent import (
    bandit_sync,
    bundle_sync,
    collect,
    consent_endpoint,
    erasure,
    fleet,
    outbox,
    preload,
    profile_sync,
    slot_fallbacks,
    ssi,
    worker_epoch,
)
from edge_agent import filter as filter_mode
from edge_agent.context import device_class
from edge_agent.decide import slot_kind
from edge_agent.health import health
from edge_agent.http_cache import cache_key
from edge_agent.metrics import EdgeMetrics
from edge_agent.pages import decide_slots
from edge_agent.responses import json_error
from edge_agent.settings import EdgeSettings
from edge_agent.state import EdgeState
from edge_agent.store import EdgeStore
from models import tcf
from models.consent import CONSENT_COOKIE
from models.erasure import Tokenizer
from models.nats_log import redact_url, startup_logger
from models.pseudonym import DEV_PSEUDONYM_KEY
from models.slots import SLOT_NAME_RE
from models.tasks import checkpoint, stop_tasks

COLLECT_PATH = "/_p13n/collect"
#: Most slots one /_p13n/decide call decides.
MAX_DECIDE_SLOTS = 32

SDK_FILE = Path(__file__).parent / "static" / "sdk.js"

log = logging.getLogger(__name__)

#: Young-generation collections every 20k allocations instead of 700: per-page objects
#: die young and full collections over the page-context map get rare. Measured: SSI p99
#: 81 ms → 12 ms at the same throughput (docs/PERFORMANCE.md).
GC_THRESHOLDS = (20_000, 20, 20)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def healthz(request: Request) -> Response:
    return JSONResponse(health(request.app.state.edge))


async def metrics(request: Request) -> Response:
    state: EdgeState = request.app.state.edge
    peer = request.client.host if request.client else ""
    if peer and not peer_in(peer, state.settings.metrics_allow):
        return json_error(403, "forbidden", "metrics are served to P13N_EDGE_METRICS_ALLOW peers only")
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def peer_in(peer: str, networks: tuple[str, ...]) -> bool:
    """Whether ``peer`` (the ASGI client host) is in ``networks``. A peer that is not an
    IP address is not on the network (a Unix socket, an in-process client): local."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return True
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


#: Shortest interval between two WAL truncations after the outbox drained (seconds).
WAL_TRUNCATE_S = 5.0


async def sessions_loop(state: EdgeState) -> None:
    """Write dirty live sessions to SQLite every second; every minute purge expired
    sessions and shells (and keep the shell cache within its bounds); once the outbox
    has drained, at most every :data:`WAL_TRUNCATE_S`, truncate the WAL so published
    events leave no copy on disk."""
    last_purge = last_truncate = time.monotonic()
    while True:
        checkpoint()
        await asyncio.sleep(1.0)
        try:
            rows = state.session_rows()
            if rows:
                await asyncio.to_thread(state.store.put_sessions, rows)
            if state.coherence is not None:  # every worker adds to the outbox; the owner drains it
                state.outbox_depth = state.coherence.outbox
                state.metrics.refresh()
            if not state.owner:  # the rest is done once per edge
                continue
            due = time.monotonic() - last_truncate > WAL_TRUNCATE_S and state.outbox_depth == 0
            if due and await asyncio.to_thread(state.store.checkpoint_published):
                last_truncate = time.monotonic()
            if time.monotonic() - last_purge > 60:
                last_purge = time.monotonic()
                await asyncio.to_thread(state.store.purge_expired_sessions, time.time())
                s = state.settings
                await asyncio.to_thread(state.store.purge_shells, time.time(), s.shell_store_entries, s.shell_store_bytes)
        except Exception:
            log.warning("persisting sessions failed; retrying", exc_info=True)


async def owned(state: EdgeState, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` once this worker does the edge's once-only work (at once when alone)."""
    try:
        await state.become_owner()
    except BaseException:
        work.close()
        raise
    await work


def sdk_script(settings: EdgeSettings) -> bytes:
    """The SDK with this edge's consent default and cookie names prepended."""
    config = {
        "consent": list(settings.default_consent),
        "consentCookie": CONSENT_COOKIE,
        "endpoint": "/_p13n/collect",
        # consent platforms: TCF purposes and Consent Mode types per category (the edge's own tables)
        "tcfCookie": settings.tcf_cookie,
        "tcf": {k: sorted(v) for k, v in tcf.parse_purposes(settings.tcf_purposes).items()},
        "tcfVendor": settings.tcf_vendor_id,
        "gcm": {
            k.strip(): [t.strip() for t in v.split(",") if t.strip()]
            for k, _, v in (p.partition(":") for p in settings.gcm_map.split(";") if p.strip())
        },
    }
    return b"window.__p13n_config=" + json.dumps(config).encode() + b";\n" + SDK_FILE.read_bytes()


async def sdk(request: Request) -> Response:
    state: EdgeState = request.app.state.edge
    etag = '"' + hashlib.sha256(state.sdk).hexdigest()[:16] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    return Response(
        state.sdk,
        media_type="application/javascript; charset=utf-8",
        headers={"cache-control": "public, max-age=300", "etag": etag},
    )


async def decide_endpoint(request: Request) -> Response:
    """``GET /_p13n/decide?slots=a,b``: the page's decisions as JSON, for single-page apps."""
    state: EdgeState = request.app.state.edge
    names = [n for n in request.query_params.get("slots", "").split(",") if n][:MAX_DECIDE_SLOTS]
    bad = [n for n in names if not SLOT_NAME_RE.match(n)]
    if not names or bad:
        return json_error(400, "bad_slots", "give ?slots=name1,name2 with valid slot names")
    page = request.query_params.get("page") or request.headers.get("referer", "/")
    try:
        parts = urlsplit(page)
    except ValueError:
        return json_error(400, "bad_page", "page must be a URL or a path (e.g. /p/dr01)")
    ctx = state.page_context(request.headers, parts.path or "/", parts.query)
    decision = decide_slots(
        ctx,
        state.bundle,
        [(n, {}) for n in names],
        state.settings.decision_deadline_ms,
        state.models,
        state.bandits,
        shed=state.overload.active,
    )
    await collect.record_exposures(state, ctx, request.headers)
    for name, outcome in decision.outcomes.items():
        state.metrics.decision(name, outcome.reason, slot_kind(state.bundle, name))
        if outcome.html is None:
            state.metrics.fallback(outcome.reason)
    body = {
        "bundle_version": decision.bundle_version,
        "model_version": state.models.version if state.models else None,
        "segment": ctx.attrs.get("segment", ""),
        "segments": ctx.attrs.get("segments", []),
        "slots": {n: {"html": o.html, "reason": o.reason, "detail": o.detail} for n, o in decision.outcomes.items()},
        "elapsed_us": round(decision.elapsed_us, 1),
    }
    response = JSONResponse(body, headers={"cache-control": "private, no-store"})
    cookie = state.visitor_cookie(ctx, request.headers.get("x-forwarded-proto") == "https")
    if cookie:
        response.headers.append("set-cookie", cookie)
    return response


async def not_found(request: Request) -> Response:
    return json_error(404, "not_found", f"no agent endpoint at {request.url.path}")


def create_app(settings: EdgeSettings) -> EdgeApp:
    """Build the agent; nothing is opened until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = EdgeStore(settings.data_dir / "edge.sqlite3")
        store.tokenizer = Tokenizer(settings.pseudonym_key.encode())
        loaded, shared_file = preload.take()
        if loaded is None:  # built in-process: nothing was loaded by a parent
            loaded = preload.load_start(settings)
        metrics_ = EdgeMetrics.create(multiprocess=shared_file is not None)
        state = EdgeState(settings=settings, store=store, metrics=metrics_, bundle=loaded.bundle)
        state.models = loaded.models
        state.content_source = loaded.source
        state.fallbacks = slot_fallbacks.load(settings.templates_dir)
        if shared_file is not None:
            state.join_workers(shared_file)
        device_class("Mozilla/5.0")  # load the UA parser's rules before traffic arrives
        state.http = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=settings.origin_timeout_s),
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        state.outbox_depth = store.outbox_depth()
        state.sdk = sdk_script(settings)
        if settings.pseudonym_key == DEV_PSEUDONYM_KEY and state.owner:
            log.warning("P13N_EDGE_PSEUDONYM_KEY is not set: using the development key (never in production)")
        app.state.edge = state
        state.outbox_writer.start()
        publisher = asyncio.create_task(outbox.publish_loop(state), name="edge-outbox-publisher")
        flusher = asyncio.create_task(sessions_loop(state), name="edge-session-flusher")
        heartbeat = asyncio.create_task(
            owned(state, fleet.heartbeat_loop(state, settings.status_interval_s)), name="edge-heartbeat"
        )
        profiles = asyncio.create_task(owned(state, profile_sync.follow_profiles(state)), name="edge-profiles")
        erasures = asyncio.create_task(owned(state, erasure.follow_erasures(state)), name="edge-erasures")
        epochs = (
            asyncio.create_task(worker_epoch.follow_epoch(state), name="edge-worker-epoch")
            if state.coherence is not None
            else None
        )
        bandits = asyncio.create_task(bandit_sync.follow_bandits(state), name="edge-bandits")
        shedder = asyncio.create_task(state.overload.run(), name="edge-load-shedder")
        watcher = (
            asyncio.create_task(bundle_sync.watch_bundles(state), name="edge-bundle-watcher")
            if settings.bundle_public_key
            else None
        )
        # long-lived start-up objects (bundle, UA rules, modules) leave the collector's
        # view, so full collections stay short under load (docs/PERFORMANCE.md)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        gc_timer = state.metrics.watch_gc()
        gc.callbacks.append(gc_timer)
        # with several workers the parent says it once for all of them (edge_agent/preload.py)
        # and each worker only that it is ready, with what it loaded
        announce = startup_logger() if state.coherence is None else log
        serving = "serving on %s:%d" if state.coherence is None else f"worker {os.getpid()} ready on %s:%d"
        announce.info(
            "p13n edge %s " + serving + ": content %s (v%s), model %s, NATS %s, origin %s%s",
            settings.edge_id,
            *settings.listen,
            state.content_source,
            state.bundle.version if state.bundle else "none",
            f"v{state.models.version}" if state.models else "none",
            redact_url(settings.nats_url),
            settings.origin,
            "" if settings.bundle_public_key else " (no P13N_EDGE_BUNDLE_PUBLIC_KEY: bundles from the hub are not followed)",
        )
        if state.content_source.startswith("model bundle"):
            announce.info(
                "slot content comes from the bundle: edits to %s take effect through `p13n bundle repack` and a push",
                settings.templates_dir,
            )
        try:
            yield
        finally:
            gc.callbacks.remove(gc_timer)  # in-process apps (tests, benches) start several
            await stop_tasks(
                [publisher, flusher, heartbeat, profiles, erasures, bandits, shedder]
                + [t for t in (watcher, epochs) if t is not None],
                log=log,
            )
            rows = state.session_rows()
            if rows:
                store.put_sessions(rows)
            await state.outbox_writer.stop()
            if state.nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(state.nc.close(), 5)
            await state.http.close()
            store.close()
            state.leave_workers()
            announce.info(
                "p13n edge %s: sessions written, %d events kept in the outbox",
                "stopped" if state.coherence is None else f"worker {os.getpid()} stopped",
                state.outbox_depth,
            )

    agent_routes = [
        Route("/_p13n/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/_p13n/metrics", metrics, methods=["GET"]),
        Route("/_p13n/collect", collect.collect, methods=["POST"]),
        Route("/_p13n/px.gif", collect.pixel, methods=["GET", "HEAD"]),
        Route("/_p13n/sdk.js", sdk, methods=["GET", "HEAD"]),
        Route("/_p13n/decide", decide_endpoint, methods=["GET"]),
        Route("/_p13n/consent", consent_endpoint.consent, methods=["GET", "POST"]),
        Route("/_p13n/{rest:path}", not_found, methods=ALL_METHODS),
        Route("/{path:path}", filter_mode.handle, methods=ALL_METHODS),
    ]
    return EdgeApp(Starlette(routes=agent_routes, lifespan=lifespan))


class EdgeApp:
    """Dispatches the hot paths directly: GET pages whose shell is in memory, collection,
    SSI fragments and the page decision to their raw ASGI handlers; other pages to the
    filter handler. Other ``/_p13n/*`` endpoints and the lifespan go through the
    Starlette router (measured in docs/PERFORMANCE.md)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self._pages = request_response(filter_mode.handle)
        self._peers: dict[str, bool] = {}
        self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
        self._guarded: frozenset[bytes] = frozenset()

    def _trusted(self, scope: Scope) -> bool:
        """Whether the peer may set forwarding headers (``P13N_EDGE_TRUSTED_PROXIES``)."""
        client = scope.get("client")
        if not client:
            return True  # a Unix socket: the proxy is on this host
        host = str(client[0])
        known = self._peers.get(host)
        if known is None:
            if self._networks is None:
                settings: EdgeSettings = self.state.edge.settings
                self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies)
                self._guarded = frozenset(
                    h.encode("latin-1") for h in (settings.geo_header, settings.user_header, "x-forwarded-proto")
                )
            try:
                address = ipaddress.ip_address(host)
                known = any(address in network for network in self._networks)
            except ValueError:  # not a network peer (Unix socket, in-process client)
                known = True
            if len(self._peers) > 4096:
                self._peers.clear()
            self._peers[host] = known
        return known

    def _drop_untrusted(self, scope: Scope) -> None:
        """A peer that is not a trusted proxy cannot set the geo country, the user id or
        the scheme: those headers are removed before any handler sees them."""
        headers = scope["headers"]
        if any(k in self._guarded for k, _ in headers):
            scope["headers"] = [(k, v) for k, v in headers if k not in self._guarded]
            self.state.edge.metrics.untrusted_headers.inc()

    def _name_worker(self, send: Send) -> Send:
        """With ``P13N_EDGE_DEBUG``: every answer names the worker process that gave it."""
        pid = str(os.getpid()).encode()

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-p13n-worker", pid)]}
            await send(message)

        return named

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not self._trusted(scope):
                self._drop_untrusted(scope)
            if self.state.edge.settings.debug:
                send = self._name_worker(send)
            path: str = scope["path"]
            if not path.startswith("/_p13n/"):
                if scope["method"] == "GET":
                    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}  # first wins
                    key = cache_key(headers.get("host", ""), filter_mode.request_target(scope))
                    shell = filter_mode.memory_shell(self.state.edge, headers, key)
                    if shell is not None:
                        await filter_mode.page_asgi(self.state.edge, scope, send, shell, headers)
                        return
                scope["app"] = self.app
                await self._pages(scope, receive, send)
                return
            if path == COLLECT_PATH and scope["method"] == "POST":
                await collect.collect_asgi(self.state.edge, scope, receive, send)
                return
            if scope["method"] in ("GET", "HEAD"):
                if path.startswith(ssi.SLOT_PREFIX):
                    await ssi.slot(self.state.edge, scope, receive, send)
                    return
                if path == ssi.AUTH_PATH:
                    await ssi.auth(self.state.edge, scope, receive, send)
                    return
        await self.app(scope, receive, send)
