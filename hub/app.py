"""The hub's ASGI app: ``create_app(settings)``; the lifespan owns NATS and tasks.

At start the hub connects to NATS in a background task (retrying with backoff and
jitter) and declares the JetStream layout; ``/v1/healthz`` says whether that is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import api, erasure, privacy_api, retention
from hub.audit import AuditLog
from hub.auth import TokenStore
from hub.fleet import Fleet
from hub.guard import flush_refusals, guarded
from hub.ingest.consumer import ConsumerCollector, ConsumerState, consume
from hub.ingest.prep import Preparer
from hub.ingest.storage import LAKE_DIR, HubStorage
from hub.nats_setup import ensure_layout
from hub.pii import PiiCipher
from hub.profiles import ProfilePublisher
from hub.refusals import RefusalAggregator
from hub.settings import HubSettings
from models.erasure import Tokenizer
from models.errors import error_body
from models.nats_log import ConnectionLog, redact_url, startup_logger
from models.tls import client_context

log = logging.getLogger(__name__)

#: Longest pause between NATS connection attempts (seconds).
MAX_RETRY_S = 30.0
#: Seconds between checks for interrupted erasure requests.
ERASURE_RESUME_S = 5.0


@dataclass
class HubState:
    settings: HubSettings
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    nc: NATS | None = None
    layout_ready: bool = False
    last_error: str = ""
    storage: HubStorage | None = None
    consumer: ConsumerState = field(default_factory=ConsumerState)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    fleet: Fleet = field(default_factory=Fleet)
    publisher: ProfilePublisher | None = None
    erasures: erasure.ErasureRecords = field(init=False)
    profiles_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        s = self.settings
        self.tokens = TokenStore(s.tokens_file)
        self.audit = AuditLog(s.data_dir / "audit.sqlite", s.audit_secret)
        self.cipher = PiiCipher.from_settings(s.pii_keys, s.pii_keys_file, s.data_dir)
        self.preparer = Preparer(s.ingest_workers, s.data_dir / LAKE_DIR, self.cipher.ring)
        self.retention_policy = retention.RetentionPolicy(
            lake_days=s.retention_lake_days,
            warehouse_days=s.retention_warehouse_days,
            dead_letter_days=s.retention_dead_letter_days,
            consent_days=s.retention_consent_days,
        )
        self.consumer.retry_base_s = s.ingest_retry_s
        self.registry.register(ConsumerCollector(self.consumer))
        self.refusals = RefusalAggregator(s.audit_refusal_window_s)
        self.auth_failures = Counter(
            "p13n_hub_auth_failures", "Requests refused for want of a valid token (401)", registry=self.registry
        )
        self.connect_failures = Counter(
            "p13n_hub_nats_connect_failures", "Failed NATS connection attempts", registry=self.registry
        )
        self.crm_failures = Counter("p13n_hub_crm_sync_failures", "Failed scheduled CRM syncs", registry=self.registry)
        self.nats_up = Gauge(
            "p13n_hub_nats_connected", "1 when connected to NATS and the layout is declared", registry=self.registry
        )
        self.erasure_requests = Counter("p13n_hub_erasure_requests", "Erasure requests accepted", registry=self.registry)
        self.erasures_pending = Gauge(
            "p13n_hub_erasures_pending", "Erasure requests not yet acknowledged by every edge", registry=self.registry
        )
        self.erasures_pending.set_function(lambda: self.erasures.pending_count() if hasattr(self, "erasures") else 0)


async def _connect_loop(state: HubState) -> None:
    """Connect and declare the layout, retrying with exponential backoff and jitter."""
    delay = state.settings.nats_retry_s
    quiet = ConnectionLog(log, "hub")
    while True:
        try:
            nc = await nats.connect(
                state.settings.nats_url.split(","),
                name="p13n-hub",
                connect_timeout=2,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                tls=client_context(state.settings.nats_ca),
                **quiet.callbacks(),
            )
            quiet.client = nc
            quiet.connected()
            report = await ensure_layout(nc.jetstream())
            state.nc = nc
            state.layout_ready = True
            state.last_error = ""
            state.nats_up.set(1)
            log.info("NATS layout ready: created=%s updated=%s", report.created, report.updated)
            await state.fleet.subscribe(nc, functools.partial(erasure.register_edge, nc.jetstream()))
            if state.storage is not None:
                state.tasks.append(asyncio.create_task(_profiles_loop(state, nc), name="hub-profiles"))
                state.tasks.append(asyncio.create_task(_erasure_acks_loop(state, nc), name="hub-erasure-acks"))
                state.tasks.append(asyncio.create_task(_erasure_resume_loop(state, nc), name="hub-erasure-resume"))
            if state.storage is not None:
                state.tasks.append(
                    asyncio.create_task(
                        consume(nc.jetstream(), state.storage, state.consumer, state.settings.fetch_batch, state.preparer),
                        name="hub-ingest",
                    )
                )
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            state.connect_failures.inc()
            state.last_error = f"{type(e).__name__}: {e}"
            quiet.failed(e)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_RETRY_S)


async def _crm_loop(state: HubState) -> None:
    """Scheduled CRM sync: run, sleep the interval (jittered), repeat; failures logged."""
    from hub.crm import CrmConfig, CrmError, CrmSync

    assert state.storage is not None
    config = CrmConfig.from_json(json.loads(Path(state.settings.crm_config).read_text()))
    sync = CrmSync(config, state.storage, state.settings.pseudonym_key.encode(), state.cipher)
    try:
        while True:
            try:
                report = await asyncio.to_thread(sync.run_once)
                log.info("CRM sync: %s", report)
            except (CrmError, OSError, ValueError) as e:
                state.crm_failures.inc()
                log.warning("CRM sync failed: %s", e)
            await asyncio.sleep(state.settings.crm_interval_s * random.uniform(0.9, 1.1))
    finally:
        sync.close()


async def _profiles_loop(state: HubState, nc: NATS) -> None:
    """Publish changed consented profiles every few seconds; purge withdrawn ones."""
    from hub.profiles import load_user_factors

    publisher = ProfilePublisher(await asyncio.to_thread(load_user_factors, state.settings.user_factors))
    state.publisher = publisher
    while True:
        await asyncio.sleep(state.settings.profile_sync_s)
        try:
            assert state.storage is not None
            await asyncio.to_thread(state.storage.refresh_marts)
            async with state.profiles_lock:  # never interleaved with an erasure
                result = await publisher.run_once(state.storage, nc.jetstream())
            if result["published"] or result["purged"]:
                log.info("profiles: %s", result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("profile sync failed; retrying", exc_info=True)


async def _erasure_resume_loop(state: HubState, nc: NATS) -> None:
    """Finish erasure requests a crash or a NATS outage interrupted (every few seconds)."""
    from hub import erasure_service

    while True:
        try:
            await erasure_service.resume(state, nc.jetstream())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("resuming erasures failed; retrying", exc_info=True)
        await asyncio.sleep(ERASURE_RESUME_S)


async def _erasure_acks_loop(state: HubState, nc: NATS) -> None:
    """Read edges' erasure acknowledgements, restarting after failures."""
    while True:
        try:
            await erasure.consume_acks(nc.jetstream(), state.erasures)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("erasure acknowledgement reader failed; restarting", exc_info=True)
            await asyncio.sleep(1.0)


async def _retention_loop(state: HubState) -> None:
    """Apply the retention policy every ``retention_interval_s`` (first run after one interval)."""
    from datetime import UTC, datetime

    while True:
        await asyncio.sleep(state.settings.retention_interval_s)
        try:
            assert state.storage is not None
            deleted = await asyncio.to_thread(retention.run, state.storage, state.retention_policy, datetime.now(UTC))
            log.info("retention: %s", deleted)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("retention run failed; retrying next interval", exc_info=True)


async def healthz(request: Request) -> Response:
    state: HubState = request.app.state.hub
    ok = state.layout_ready and state.nc is not None and state.nc.is_connected
    body = {"status": "ok" if ok else "degraded", "nats": "connected" if ok else "unavailable"}
    if state.last_error and not ok:
        body["last_error"] = state.last_error
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    state: HubState = request.app.state.hub
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)


async def not_found(request: Request) -> Response:
    return JSONResponse(error_body(404, "not_found", f"no hub endpoint at {request.url.path}"), status_code=404)


def create_app(settings: HubSettings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = HubState(settings)
        state.storage = HubStorage(settings.data_dir)
        state.storage.tokenizer = Tokenizer(settings.pseudonym_key.encode())
        state.storage.cipher = state.cipher
        state.erasures = erasure.ErasureRecords(state.storage)
        app.state.hub = state
        connector = asyncio.create_task(_connect_loop(state), name="hub-nats-connect")
        state.tasks.append(asyncio.create_task(_retention_loop(state), name="hub-retention"))
        if settings.crm_config:
            state.tasks.append(asyncio.create_task(_crm_loop(state), name="hub-crm-sync"))
        startup_logger().info(
            "p13n hub serving on %s:%d: data %s, NATS %s, %d ingest workers, API tokens %s, CRM sync %s, bundle uploads %s",
            *settings.listen,
            settings.data_dir,
            redact_url(settings.nats_url),
            settings.ingest_workers,
            settings.tokens_file or "none",
            "on" if settings.crm_config else "off",
            "on" if settings.bundle_public_key else "off (no P13N_HUB_BUNDLE_PUBLIC_KEY)",
        )
        try:
            yield
        finally:
            for task in [connector, *state.tasks]:
                task.cancel()
            for task in [connector, *state.tasks]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if state.nc is not None:
                # every task that used the connection has stopped (acks and puts awaited):
                # flush what was published and close. A drain would wait on the pull
                # subscriptions' pending fetches for its whole timeout (5 s at every stop).
                with contextlib.suppress(Exception):  # NATS gone or reconnecting
                    await asyncio.wait_for(state.nc.flush(), timeout=1)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(state.nc.close(), timeout=2)
            state.preparer.close()
            state.storage.close()
            await flush_refusals(state)
            state.audit.close()
            startup_logger().info("p13n hub stopped: tiers closed, unacknowledged events left to NATS")

    return Starlette(routes=routes(), lifespan=lifespan)


def routes() -> list[Route]:
    """Every hub endpoint with the permission it needs (docs/PRIVACY.md has the matrix)."""
    p = privacy_api
    return [
        Route("/v1/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", guarded("status.read", metrics, action="metrics.read", audit_success=False), methods=["GET"]),
        Route(
            "/v1/events",
            guarded("events.write", api.post_events, action="events.write", audit_success=False, api_keys_ok=True),
            methods=["POST"],
        ),
        Route("/v1/stats", guarded("status.read", api.stats, action="stats.read"), methods=["GET"]),
        Route("/v1/edges", guarded("status.read", api.edges, action="edges.read"), methods=["GET"]),
        Route("/v1/edges/{edge_id}", guarded("edges.manage", p.deregister_edge, action="edges.deregister"), methods=["DELETE"]),
        Route("/v1/bundles", guarded("status.read", api.list_bundles, action="bundles.read"), methods=["GET"]),
        Route("/v1/bundles", guarded("bundles.activate", api.upload_bundle, action="bundles.upload"), methods=["POST"]),
        Route(
            "/v1/bundles/rollback",
            guarded("bundles.activate", api.rollback_bundle, action="bundles.rollback"),
            methods=["POST"],
        ),
        Route(
            "/v1/bundles/{version:int}/activate",
            guarded("bundles.activate", api.activate_bundle, action="bundles.activate"),
            methods=["POST"],
        ),
        Route("/v1/marts/items", guarded("marts.read", api.item_popularity, action="marts.read"), methods=["GET"]),
        Route(
            "/v1/subjects/{subject}",
            guarded("subjects.read", p.export_subject, action="subjects.export", subject_param="subject"),
            methods=["GET"],
        ),
        Route(
            "/v1/subjects/{subject}",
            guarded("subjects.erase", p.erase_subject, action="subjects.erase", subject_param="subject"),
            methods=["DELETE"],
        ),
        Route("/v1/erasures/{request_id}", guarded("erasures.read", p.erasure_status, action="erasures.read"), methods=["GET"]),
        Route("/v1/retention/run", guarded("retention.run", p.run_retention, action="retention.run"), methods=["POST"]),
        Route("/v1/audit", guarded("audit.read", p.audit_entries, action="audit.read"), methods=["GET"]),
        Route("/{rest:path}", not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    ]
