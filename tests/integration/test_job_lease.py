"""Several hub processes on one NATS (``P13N_HUB_JOB_LEASE_S``): the scheduled jobs run
in exactly one of them, and move to another within about 1⅓ lease times when it dies."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.conftest import Hub, HubFactory
from tests.integration.helpers import descendants, fetch, metric, wait_for

LEASE_S = "1.5"


def jobs(hub: Hub) -> dict[str, object]:
    data: dict[str, object] = json.loads(fetch(hub.url + "/v1/jobs", hub.auth("viewer")).body)
    return data


def runs(hub: Hub, name: str = "console-samples") -> int:
    return next(int(j["runs"]) for j in jobs(hub)["jobs"] if j["name"] == name)  # type: ignore[attr-defined, index]


def test_one_process_runs_the_jobs_and_another_takes_over_when_it_dies(nats_server: str, start_hub: HubFactory) -> None:
    a = start_hub(nats_server, JOB_LEASE_S=LEASE_S, CONSOLE_SAMPLE_S="1")
    b = start_hub(nats_server, JOB_LEASE_S=LEASE_S, CONSOLE_SAMPLE_S="1")
    wait_for(lambda: any(jobs(h)["lease"]["held"] for h in (a, b)), timeout_s=20)  # type: ignore[index]
    leader, follower = (a, b) if jobs(a)["lease"]["held"] else (b, a)  # type: ignore[index]
    wait_for(lambda: runs(leader) >= 2, timeout_s=20)
    # the follower starts none of the scheduled jobs while the leader lives
    for _ in range(6):
        view = jobs(follower)
        assert view["lease"]["held"] is False and view["lease"]["holder"] == jobs(leader)["lease"]["me"]  # type: ignore[index]
        assert all(j["runs"] == 0 for j in view["jobs"] if j["kind"] == "periodic")  # type: ignore[attr-defined, index]
        assert metric(fetch(follower.url + "/metrics", follower.auth("viewer")).text, "p13n_hub_job_leader") == 0
        time.sleep(0.5)
    assert metric(fetch(leader.url + "/metrics", leader.auth("viewer")).text, "p13n_hub_job_leader") == 1

    # the leader dies without a word (no release): its lease ages out and the jobs move
    for pid in [*descendants(leader.child.proc.pid), leader.child.proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    died = time.monotonic()
    wait_for(lambda: runs(follower) >= 1, timeout_s=20)
    moved_s = time.monotonic() - died
    assert jobs(follower)["lease"]["held"] is True  # type: ignore[index]
    print(f"jobs moved {moved_s:.1f} s after the leader died (lease {LEASE_S} s)")
    assert moved_s < 10, moved_s  # "within a few seconds": about 1⅓ lease times, slack for a busy machine
