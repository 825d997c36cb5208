"""The edge agent's ASGI app: ``create_app(settings)``; the lifespan owns resources."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from edge_agent import collect, outbox, ssi
from edge_agent import filter as filter_mode
from edge_agent.context import device_class
from edge_agent.metrics import EdgeMetrics
from edge_agent.responses import json_error
from edge_agent.settings import DEV_PSEUDONYM_KEY, EdgeSettings
from edge_agent.state import EdgeState, load_bundle
from edge_agent.store import EdgeStore
from models.consent import CONSENT_COOKIE
from models.content import BundleError

SDK_FILE = Path(__file__).parent / "static" / "sdk.js"

log = logging.getLogger(__name__)

#: Young-generation collections every 20k allocations instead of 700: per-page objects
#: die young and full collections over the page-context map get rare. Measured: SSI p99
#: 81 ms → 12 ms at the same throughput (docs/PERFORMANCE.md).
GC_THRESHOLDS = (20_000, 20, 20)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def healthz(request: Request) -> Response:
    state: EdgeState = request.app.state.edge
    return JSONResponse(
        {
            "status": "ok",
            "edge_id": state.settings.edge_id,
            "bundle_version": state.bundle.version if state.bundle else None,
            "shells_cached": len(state.shells),
            "outbox_depth": state.outbox_depth,
            "nats": "connected" if state.nc is not None and state.nc.is_connected else "disconnected",
            "last_error": state.last_error,
        }
    )


async def metrics(request: Request) -> Response:
    state: EdgeState = request.app.state.edge
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def sdk_script(settings: EdgeSettings) -> bytes:
    """The SDK with this edge's consent default and cookie names prepended."""
    config = {"consent": list(settings.default_consent), "consentCookie": CONSENT_COOKIE, "endpoint": "/_p13n/collect"}
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


async def not_found(request: Request) -> Response:
    return json_error(404, "not_found", f"no agent endpoint at {request.url.path}")


def create_app(settings: EdgeSettings) -> EdgeApp:
    """Build the agent; nothing is opened until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = EdgeStore(settings.data_dir / "edge.sqlite3")
        bundle = None
        try:
            bundle = load_bundle(settings)
        except (OSError, ValueError, BundleError) as e:
            # serve fallbacks rather than refuse to start: the page path fails open
            log.error("no content bundle loaded (%s); every slot renders its fallback", e)
        metrics_ = EdgeMetrics.create()
        state = EdgeState(settings=settings, store=store, metrics=metrics_, bundle=bundle)
        device_class("Mozilla/5.0")  # load the UA parser's rules before traffic arrives
        state.http = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=settings.origin_timeout_s),
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        state.outbox_depth = store.outbox_depth()
        state.sdk = sdk_script(settings)
        if settings.pseudonym_key == DEV_PSEUDONYM_KEY:
            log.warning("P13N_EDGE_PSEUDONYM_KEY is not set: using the development key (never in production)")
        app.state.edge = state
        state.outbox_writer.start()
        publisher = asyncio.create_task(outbox.publish_loop(state), name="edge-outbox-publisher")
        # long-lived start-up objects (bundle, UA rules, modules) leave the collector's
        # view, so full collections stay short under load (docs/PERFORMANCE.md)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            await state.outbox_writer.stop()
            if state.nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(state.nc.close(), 5)
            await state.http.close()
            store.close()

    agent_routes = [
        Route("/_p13n/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/_p13n/metrics", metrics, methods=["GET"]),
        Route("/_p13n/collect", collect.collect, methods=["POST"]),
        Route("/_p13n/px.gif", collect.pixel, methods=["GET", "HEAD"]),
        Route("/_p13n/sdk.js", sdk, methods=["GET", "HEAD"]),
        Route("/_p13n/{rest:path}", not_found, methods=ALL_METHODS),
        Route("/{path:path}", filter_mode.handle, methods=ALL_METHODS),
    ]
    return EdgeApp(Starlette(routes=agent_routes, lifespan=lifespan))


class EdgeApp:
    """Dispatches the hot paths directly: pages to the filter handler, SSI fragments and
    the page decision to their raw ASGI handlers. Other ``/_p13n/*`` endpoints and the
    lifespan go through the Starlette router (measured in docs/PERFORMANCE.md)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self._pages = request_response(filter_mode.handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.startswith("/_p13n/"):
                scope["app"] = self.app
                await self._pages(scope, receive, send)
                return
            if scope["method"] in ("GET", "HEAD"):
                if path.startswith(ssi.SLOT_PREFIX):
                    await ssi.slot(self.state.edge, scope, receive, send)
                    return
                if path == ssi.AUTH_PATH:
                    await ssi.auth(self.state.edge, scope, receive, send)
                    return
        await self.app(scope, receive, send)
