"""The hub's background jobs (run by :class:`hub.jobs.Supervisor`): what each does and
how often. ``/v1/jobs`` shows them."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub import erasure, lake_parquet, retention
from hub.bandits import update_bandits
from hub.console.sampler import sample as sample_console
from hub.console.snapshots import snapshot_all
from hub.jobs import Job
from hub.profiles import ProfilePublisher, load_user_factors
from hub.state import HubState

log = logging.getLogger(__name__)

#: Seconds between checks for interrupted erasure requests.
ERASURE_RESUME_S = 5.0


def connected_nats(state: HubState) -> Any:
    nc = state.nc
    if nc is None or not state.layout_ready:
        raise ConnectionError("the hub is not connected to NATS")
    return nc


def jobs(state: HubState) -> list[Job]:
    s = state.settings
    out = [
        Job(
            "profiles",
            lambda: publish_profiles(state),
            interval_s=s.profile_sync_s,
            first_after_s=s.profile_sync_s,
            needs_nats=True,
        ),
        Job("erasure-resume", lambda: resume_erasures(state), interval_s=ERASURE_RESUME_S, needs_nats=True),
        Job(
            "erasure-acks",
            lambda: erasure.consume_acks(connected_nats(state).jetstream(), state.erasures),
            follower=True,
            needs_nats=True,
        ),
        Job(
            "retention",
            lambda: apply_retention(state),
            interval_s=s.retention_interval_s,
            first_after_s=s.retention_interval_s,
            retry_s=60.0,
        ),
    ]
    out.append(Job("bandits", lambda: update_bandits(state), interval_s=s.bandit_interval_s, retry_s=30.0, needs_nats=True))
    out.append(Job("console-samples", lambda: sample_console(state), interval_s=s.console_sample_s, retry_s=30.0))
    if s.console_results_ttl_s > 0:
        out.append(Job("experiment-snapshots", lambda: snapshot_all(state), interval_s=s.console_results_ttl_s, retry_s=60.0))
    if s.training_key:
        out.append(
            Job(
                "training",
                lambda: scheduled_training(state),
                interval_s=s.training_interval_s,
                first_after_s=s.training_interval_s,
                jitter=0.1,
                retry_s=60.0,
                needs_nats=True,
            )
        )
    if s.lake_export:
        out.append(Job("lake-export", lambda: lake_parquet.export(state), interval_s=s.lake_export_interval_s, retry_s=60.0))
    if s.crm_config:
        run, close = crm_sync(state)
        out.append(Job("crm-sync", run, interval_s=s.crm_interval_s, jitter=0.1, retry_s=30.0, close=close))
    return out


async def publish_profiles(state: HubState) -> dict[str, int]:
    """Refresh the marts, then publish changed consented profiles and purge withdrawn ones."""
    assert state.storage is not None
    if state.publisher is None:
        state.publisher = ProfilePublisher(await asyncio.to_thread(load_user_factors, state.settings.user_factors))
    await asyncio.to_thread(state.storage.refresh_marts)
    async with state.profiles_lock:  # never interleaved with an erasure
        result: dict[str, int] = await state.publisher.run_once(state.storage, connected_nats(state).jetstream())
    if result["published"] or result["purged"]:
        log.info("profiles: %s", result)
    return result


async def resume_erasures(state: HubState) -> None:
    """Finish erasure requests a crash or a NATS outage interrupted."""
    from hub import erasure_service

    await erasure_service.resume(state, connected_nats(state).jetstream())


async def apply_retention(state: HubState) -> dict[str, int]:
    assert state.storage is not None
    deleted: dict[str, int] = await asyncio.to_thread(retention.run, state.storage, state.retention_policy, datetime.now(UTC))
    exported = await lake_parquet.export(state)  # dropped day files take their partitions with them
    if exported is not None:
        deleted["lake_parquet.partitions"] = len(exported["deleted"])
    log.info("retention: %s", deleted)
    return deleted


async def scheduled_training(state: HubState) -> dict[str, Any]:
    """Start a training run when events were stored since the last one; wait for it."""
    store = state.storage
    assert store is not None
    training = state.training
    if training.running is not None:
        return {"skipped": f"run {training.running} in progress"}
    if training.accepted_at_last_run is None:
        last = await asyncio.to_thread(store.training_runs.recent, 1)
        training.accepted_at_last_run = int(last[0].get("accepted_events", 0)) if last else None
    accepted = (await asyncio.to_thread(store.counters)).get("accepted", 0)
    if not training.due(accepted):
        return {"skipped": "no new events since the last run"}
    run = await training.start(store, connected_nats(state), "schedule", "scheduler", False)
    await training.wait()
    return {"run": run["id"]}


def crm_sync(state: HubState) -> tuple[Any, Any]:
    """The scheduled CRM sync's pass (the client is made once, on the first pass) and
    what closes its client at stop."""
    from hub.crm import CrmConfig, CrmSync

    holder: dict[str, CrmSync] = {}

    async def run() -> Any:
        assert state.storage is not None
        sync = holder.get("sync")
        if sync is None:
            config = CrmConfig.from_json(json.loads(Path(state.settings.crm_config).read_text()))
            sync = holder["sync"] = CrmSync(config, state.storage, state.settings.pseudonym_key.encode(), state.cipher)
        try:
            report = await asyncio.to_thread(sync.run_once)
        except Exception:
            state.crm_failures.inc()
            raise
        log.info("CRM sync: %s", report)
        return report

    def close() -> None:
        sync = holder.pop("sync", None)
        if sync is not None:
            sync.close()

    return run, close
