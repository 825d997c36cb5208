"""The hub's background work as named jobs, run by one supervisor.

A :class:`Job` is either **periodic** (``run`` does one pass: CRM sync, retention,
profile publishing, erasure resume) or a **follower** (``run`` follows a stream and
returns only when it fails: erasure acknowledgements). The :class:`Supervisor` runs each
in its own task with one policy for all: a periodic job runs every ``interval_s``
(jittered); a failed run is retried after a backoff that doubles from ``retry_s`` up to
the interval (or :data:`MAX_BACKOFF_S` for a follower), and the error is logged once
per streak with the traceback only the first time. Stopping is one idiom: cancel every
task and wait for it. A job that needs NATS waits until the hub is connected.

Each job's runs, failures, last success, last error and next run are visible in
``GET /v1/jobs`` and as ``p13n_hub_job_*`` metrics — what a leader lease (several hub
processes, one running each job) will hook into.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from models.tasks import checkpoint, stop_tasks

log = logging.getLogger(__name__)

#: How long the jobs may take to end once cancelled at stop (a job's own cleanup).
STOP_GRACE_S = 10.0

#: Longest wait before a failed follower is restarted (seconds).
MAX_BACKOFF_S = 30.0


@dataclass
class Job:
    name: str
    #: One pass (periodic) or the follower itself; raising means the run failed.
    run: Callable[[], Awaitable[Any]]
    #: Seconds between the starts of two passes (a follower: ignored).
    interval_s: float = 0.0
    #: The first pass after this many seconds (default: at once).
    first_after_s: float = 0.0
    #: Spread of the interval, as a fraction (0.1: ±10 %).
    jitter: float = 0.0
    #: First retry delay after a failure; doubles per failure in a row.
    retry_s: float = 1.0
    follower: bool = False
    #: Waits for ``Supervisor.ready`` (the NATS connection and layout) before each run.
    needs_nats: bool = False
    #: Releases what the job holds (a client, a connection) once it has stopped.
    close: Callable[[], None] | None = field(default=None, repr=False)
    # what it has done
    runs: int = 0
    failures: int = 0
    failures_in_a_row: int = 0
    last_started: float | None = None
    last_success: float | None = None
    last_error: str = ""
    next_run: float | None = None
    running: bool = False
    last_result: Any = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "follower" if self.follower else "periodic",
            "interval_s": None if self.follower else self.interval_s,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "failures_in_a_row": self.failures_in_a_row,
            "last_started": self.last_started,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "next_run": self.next_run,
        }


class Supervisor:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: Set while NATS is connected and the layout declared (jobs with ``needs_nats``).
        self.ready = asyncio.Event()
        #: Set while this process may start periodic jobs: always, unless a job lease
        #: (hub/lease.py) replaces it with its own event
        self.leader = asyncio.Event()
        self.leader.set()
        if registry is not None:
            registry.register(JobCollector(self))

    def add(self, job: Job) -> None:
        if job.name in self.jobs:
            raise ValueError(f"job {job.name!r} is already registered")
        self.jobs[job.name] = job
        self.tasks[job.name] = asyncio.create_task(self._loop(job), name=f"hub-job-{job.name}")

    async def stop(self) -> None:
        """Cancel every job and wait until each has stopped."""
        await stop_tasks(self.tasks.values(), grace_s=STOP_GRACE_S, log=log)
        self.tasks.clear()
        for job in self.jobs.values():
            if job.close is not None:
                try:
                    job.close()
                except Exception:  # stopping goes on
                    log.warning("job %s: closing failed", job.name, exc_info=True)

    def view(self) -> list[dict[str, Any]]:
        return [job.view() for job in sorted(self.jobs.values(), key=lambda j: j.name)]

    async def _wait(self, job: Job, seconds: float) -> None:
        job.next_run = time.time() + seconds
        await asyncio.sleep(seconds)

    def _delay(self, job: Job) -> float:
        if job.failures_in_a_row:
            ceiling = MAX_BACKOFF_S if job.follower else max(job.interval_s, job.retry_s)
            return float(min(job.retry_s * 2 ** (job.failures_in_a_row - 1), ceiling) * random.uniform(0.8, 1.2))
        return job.interval_s * random.uniform(1 - job.jitter, 1 + job.jitter)

    async def _loop(self, job: Job) -> None:
        if job.first_after_s:
            await self._wait(job, job.first_after_s)
        while True:
            checkpoint()
            if job.needs_nats and not self.ready.is_set():
                job.next_run = None
                await self.ready.wait()
            if not job.follower and not self.leader.is_set():  # another hub process runs it
                job.next_run = None
                await self.leader.wait()
            job.next_run = None
            job.running = True
            job.last_started = time.time()
            job.runs += 1
            try:
                job.last_result = await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                job.failures += 1
                job.failures_in_a_row += 1
                job.last_error = f"{type(e).__name__}: {e}"[:300]
                if job.failures_in_a_row == 1:
                    log.warning("job %s failed (%s); retrying with backoff", job.name, job.last_error, exc_info=True)
                else:
                    log.warning("job %s failed again (%d in a row): %s", job.name, job.failures_in_a_row, job.last_error)
            else:
                if job.failures_in_a_row:
                    log.warning("job %s works again after %d failures", job.name, job.failures_in_a_row)
                job.failures_in_a_row = 0
                job.last_success = time.time()
                job.last_error = ""
            finally:
                job.running = False
            # a follower that returned has nothing more to follow: it starts again soon
            await self._wait(job, self._delay(job) if (job.failures_in_a_row or not job.follower) else job.retry_s)


class JobCollector:
    """``p13n_hub_job_*``: runs and failures per job, last success, next run."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        runs = CounterMetricFamily("p13n_hub_job_runs", "Runs started per background job", labels=["job_name"])
        failures = CounterMetricFamily("p13n_hub_job_failures", "Failed runs per background job", labels=["job_name"])
        success = GaugeMetricFamily(
            "p13n_hub_job_last_success_timestamp_seconds", "When a job last ran without error (0: never)", labels=["job_name"]
        )
        upcoming = GaugeMetricFamily(
            "p13n_hub_job_next_run_timestamp_seconds",
            "When a job runs next (0: running or waiting for NATS)",
            labels=["job_name"],
        )
        for job in self.supervisor.jobs.values():
            runs.add_metric([job.name], job.runs)
            failures.add_metric([job.name], job.failures)
            success.add_metric([job.name], job.last_success or 0.0)
            upcoming.add_metric([job.name], job.next_run or 0.0)
        leader = GaugeMetricFamily(
            "p13n_hub_job_leader", "1 while this process may start the scheduled jobs (P13N_HUB_JOB_LEASE_S: it holds the lease)"
        )
        leader.add_metric([], 1.0 if self.supervisor.leader.is_set() else 0.0)
        return [runs, failures, success, upcoming, leader]
