"""Several hub processes on one PostgreSQL database (``P13N_HUB_DATABASE_URL``) and one
NATS: they share the ingest's durable consumer and the tiers, the job lease picks one
of them for the scheduled jobs, and a hub killed mid-stream loses and duplicates no
event (its unacknowledged messages are redelivered to the others and deduplicated by
the event id)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from hub.ingest.consumer import ACK_WAIT_S, DURABLE
from models import nats_layout as L
from tests.conftest import AgentFactory, Hub, HubFactory, Origin
from tests.integration.helpers import descendants, fetch, wait_for
from tests.integration.ingest_helpers import post_events, stats

CONSENT = "p13n_consent=necessary.analytics.personalization"
BATCHES, PER_BATCH = 60, 10


def kill(hub: Hub) -> None:
    """SIGKILL the hub and every process under it: no goodbye, no release, no ack."""
    for pid in [*descendants(hub.child.proc.pid), hub.child.proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def leader(hubs: list[Hub]) -> Hub | None:
    for hub in hubs:
        try:
            view = json.loads(fetch(hub.url + "/v1/jobs", hub.auth("viewer")).body)
        except OSError:
            continue
        if view["lease"]["held"]:
            return hub
    return None


def test_three_hubs_share_the_ingest_and_the_tiers_and_one_dies_mid_stream(
    pg_url: str, nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    settings = {"DATABASE_URL": pg_url, "JOB_LEASE_S": "1.5", "FETCH_BATCH": "5", "PROFILE_SYNC_S": "0.5"}
    hubs = [start_hub(nats_server, **settings) for _ in range(3)]
    wait_for(lambda: leader(hubs) is not None, timeout_s=20)
    first_leader = leader(hubs)
    assert first_leader is not None
    victim = first_leader  # the hardest case: the job leader dies while it ingests
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-pg")
    sent: list[str] = []
    errors: list[BaseException] = []

    def traffic() -> None:
        try:
            for b in range(BATCHES):
                visitor = f"visitorPgShare{b % 7:010d}"
                events = [
                    {"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://shop.example/p/it{b % 5}"}
                    for _ in range(PER_BATCH)
                ]
                reply = post_events(agent.url, events, {"Cookie": f"p13n_id={visitor}; {CONSENT}"})
                assert reply.status == 202, reply.text
                sent.extend(e["event_id"] for e in events)
                time.sleep(0.05)
        except BaseException as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=traffic)
    thread.start()
    wait_for(lambda: len(sent) >= BATCHES * PER_BATCH // 3, timeout_s=30)
    kill(victim)
    killed_at = time.monotonic()
    survivors = [h for h in hubs if h is not victim]
    wait_for(lambda: leader(survivors) is not None, timeout_s=20)  # the jobs move while traffic goes on
    print(f"jobs moved to another hub {time.monotonic() - killed_at:.1f} s after the leader was killed")
    thread.join(60)
    assert not errors, errors
    total = BATCHES * PER_BATCH
    wait_for(lambda: stats(survivors[0])["accepted"] >= total, timeout_s=60)
    caught_up_s = time.monotonic() - killed_at
    print(f"every event stored {caught_up_s:.1f} s after a hub was killed (ack wait {ACK_WAIT_S:.0f} s)")
    # what the dead hub held came back after the ack wait, not the old minute
    assert caught_up_s < ACK_WAIT_S + 25, caught_up_s

    with psycopg.connect(pg_url, autocommit=True) as db:
        stored = db.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        lake = db.execute("SELECT count(*) FROM lake_events").fetchone()
        counted = dict(db.execute("SELECT name, sum(value) FROM counters GROUP BY name").fetchall())
        writers: dict[str, Any] = dict(db.execute("SELECT writer, value FROM counters WHERE name = 'accepted'").fetchall())
        ids = {r[0] for r in db.execute("SELECT event_id FROM events").fetchall()}
    assert stored == (total, total) and lake == (total,)
    assert ids == set(sent)  # every event the edge accepted, each once
    assert counted["accepted"] == total  # and counted once, whichever hub stored it
    assert len([w for w, n in writers.items() if n]) >= 2, writers  # the work was shared
    for hub in survivors:  # every hub answers from the same tiers
        assert stats(hub)["accepted"] == total and stats(hub)["rows"]["warehouse.events"] == total

    # the new job leader folds every event into the marts, once
    def views() -> int:
        with psycopg.connect(pg_url, autocommit=True) as db:
            row = db.execute("SELECT coalesce(sum(views), 0) FROM user_features").fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: views() == total, timeout_s=30)
    assert views() == total  # folded once, not once per hub


def test_an_ingest_consumer_made_by_an_older_hub_gets_the_shorter_ack_wait(nats_server: str, start_hub: HubFactory) -> None:
    """Older hubs made the durable consumer with a 60 s ack wait; pulling from it keeps
    its config, so the hub sets its own at start."""
    import asyncio

    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from hub.nats_setup import ensure_layout

    async def older() -> None:
        nc = await nats.connect(nats_server)
        js = nc.jetstream()
        await ensure_layout(js)
        await js.add_consumer(
            L.EVENTS_STREAM,
            ConsumerConfig(
                durable_name=DURABLE,
                name=DURABLE,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=10_000,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=f"{L.EVENTS_SUBJECT_PREFIX}.>",
            ),
        )
        await nc.close()

    async def ack_wait() -> float:
        nc = await nats.connect(nats_server)
        try:
            return float((await nc.jetstream().consumer_info(L.EVENTS_STREAM, DURABLE)).config.ack_wait or 0)
        finally:
            await nc.close()

    asyncio.run(older())
    assert asyncio.run(ack_wait()) == 60
    start_hub(nats_server)
    wait_for(lambda: asyncio.run(ack_wait()) == ACK_WAIT_S, timeout_s=20)


def test_a_hub_on_a_shared_database_takes_the_job_lease_unasked(pg_url: str, nats_server: str, start_hub: HubFactory) -> None:
    """Without ``P13N_HUB_JOB_LEASE_S`` a hub on PostgreSQL still runs its jobs under the
    lease (15 s): a second hub started the same way never runs them too."""
    hub = start_hub(nats_server, DATABASE_URL=pg_url)
    wait_for(lambda: leader([hub]) is hub, timeout_s=20)
    lease = json.loads(fetch(hub.url + "/v1/jobs", hub.auth("viewer")).body)["lease"]
    assert lease["lease_s"] == 15.0
    other = start_hub(nats_server, DATABASE_URL=pg_url)
    view = json.loads(fetch(other.url + "/v1/jobs", other.auth("viewer")).body)
    assert view["lease"]["held"] is False and all(j["runs"] == 0 for j in view["jobs"] if j["kind"] == "periodic")


def test_a_database_the_hub_cannot_open_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from p13n.procs import free_port, p13n_command

    env = {
        **os.environ,
        "P13N_HUB_LISTEN": f"127.0.0.1:{free_port()}",
        "P13N_HUB_DATA_DIR": str(tmp_path / "hub"),
        "P13N_ALLOW_DEV_KEYS": "1",
        "P13N_HUB_DATABASE_URL": f"postgresql://p13n_hub:s3cret-db-password@127.0.0.1:{free_port()}/p13n",
    }
    run = subprocess.run(p13n_command("hub", "serve"), env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p13n hub serve: storage: PostgreSQL at postgresql://p13n_hub:***@"), lines
    assert "s3cret-db-password" not in run.stderr + run.stdout and "Traceback" not in run.stderr
