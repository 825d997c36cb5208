"""The hub's ASGI app: ``create_app(settings)``; the lifespan owns NATS and tasks.

At start the hub connects to NATS in a background task (retrying with backoff and
jitter) and declares the JetStream layout; ``/v1/healthz`` says whether that is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator

import nats
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import api, background, erasure, experiments_api, privacy_api, training_api
from hub.console import routes as console_routes
from hub.console.state import Console
from hub.guard import flush_refusals, guarded
from hub.ingest.consumer import consume
from hub.lease import JobLease
from hub.nats_setup import ensure_layout
from hub.settings import HubSettings
from hub.state import HubState
from hub.storage import describe, open_store
from models.erasure import Tokenizer
from models.errors import error_body
from models.nats_log import ConnectionLog, redact_url, startup_logger
from models.tasks import stop_tasks
from models.tls import client_context

log = logging.getLogger(__name__)

#: How long the ingest consumer may take to hand back its batches at stop (seconds).
TASKS_GRACE_S = 10.0
#: Longest pause between NATS connection attempts (seconds).
MAX_RETRY_S = 30.0


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
            report = await ensure_layout(nc.jetstream(), state.settings.nats_replicas)
            state.nc = nc
            state.layout_ready = True
            state.last_error = ""
            state.nats_up.set(1)
            log.info("NATS layout ready: created=%s updated=%s", report.created, report.updated)
            await state.fleet.subscribe(nc, functools.partial(erasure.register_edge, nc.jetstream()))
            state.jobs.ready.set()  # the jobs that need NATS start now
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
        state.storage = open_store(settings.data_dir, settings.database_url)
        state.storage.tokenizer = Tokenizer(settings.pseudonym_key.encode())
        state.storage.cipher = state.cipher
        state.erasures = state.storage.erasures
        state.console = Console.open(settings.data_dir, settings.console_session_s)
        interrupted = await asyncio.to_thread(state.storage.training_runs.interrupted, time.time())
        if interrupted:
            log.warning("training runs interrupted by the last stop, marked failed: %s", ", ".join(interrupted))
        app.state.hub = state
        connector = asyncio.create_task(_connect_loop(state), name="hub-nats-connect")
        lease_task = None
        if settings.effective_job_lease_s > 0:
            state.lease = JobLease(settings.effective_job_lease_s, settings.nats_replicas)
            state.jobs.leader = state.lease.held
            lease_task = asyncio.create_task(
                state.lease.run(lambda: background.connected_nats(state).jetstream(), state.jobs.ready), name="hub-job-lease"
            )
        for job in background.jobs(state):
            state.jobs.add(job)
        startup_logger().info(
            "p13n hub serving on %s:%d: data %s, NATS %s, %d ingest workers, API tokens %s, CRM sync %s, bundle uploads %s",
            *settings.listen,
            describe(settings.data_dir, settings.database_url),
            redact_url(settings.nats_url),
            settings.ingest_workers,
            settings.tokens_file or "none",
            "on" if settings.crm_config else "off",
            "on" if settings.bundle_public_key else "off (no P13N_HUB_BUNDLE_PUBLIC_KEY)",
        )
        try:
            yield
        finally:
            await state.training.stop()
            await state.jobs.stop()
            if lease_task is not None and state.lease is not None:
                await stop_tasks([lease_task], grace_s=TASKS_GRACE_S, log=log)
                if state.nc is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            state.lease.release(lambda: background.connected_nats(state).jetstream()), timeout=2
                        )
            await stop_tasks([connector, *state.tasks], grace_s=TASKS_GRACE_S, log=log)
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
            state.console.close()
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
        Route("/v1/jobs", guarded("status.read", api.jobs, action="jobs.read"), methods=["GET"]),
        Route("/v1/edges/{edge_id}", guarded("edges.manage", p.deregister_edge, action="edges.deregister"), methods=["DELETE"]),
        Route("/v1/bundles", guarded("status.read", api.list_bundles, action="bundles.read"), methods=["GET"]),
        Route("/v1/bundles", guarded("bundles.activate", api.upload_bundle, action="bundles.upload"), methods=["POST"]),
        Route(
            "/v1/bundles/{version:int}",
            guarded("bundles.download", api.download_bundle, action="bundles.download"),
            methods=["GET"],
        ),
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
        Route("/v1/training/runs", guarded("training.read", training_api.list_runs, action="training.list"), methods=["GET"]),
        Route(
            "/v1/experiments",
            guarded("experiments.read", experiments_api.list_experiments, action="experiments.list"),
            methods=["GET"],
        ),
        Route(
            "/v1/experiments/{name}/results",
            guarded("experiments.read", experiments_api.experiment_results, action="experiments.results"),
            methods=["GET"],
        ),
        Route(
            "/v1/experiments/{name}/results.html",
            guarded("experiments.read", experiments_api.experiment_results_html, action="experiments.report"),
            methods=["GET"],
        ),
        Route("/v1/training/runs", guarded("training.run", training_api.start_run, action="training.run"), methods=["POST"]),
        Route(
            "/v1/training/runs/{run_id}",
            guarded("training.read", training_api.get_run, action="training.read"),
            methods=["GET"],
        ),
        Route(
            "/v1/training/runs/{run_id}/report.html",
            guarded("training.read", training_api.run_report_html, action="training.report"),
            methods=["GET"],
        ),
        Route("/v1/retention/run", guarded("retention.run", p.run_retention, action="retention.run"), methods=["POST"]),
        Route("/v1/audit", guarded("audit.read", p.audit_entries, action="audit.read"), methods=["GET"]),
        *console_routes.routes(),
        Route("/{rest:path}", not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    ]
