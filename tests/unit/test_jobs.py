"""The hub's job supervisor: one backoff policy, one way to stop, what each job did."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hub.jobs import Job, Supervisor


def test_a_failing_job_backs_off_recovers_and_is_visible() -> None:
    async def scenario() -> tuple[list[dict[str, object]], str, list[float]]:
        registry = CollectorRegistry()
        sup = Supervisor(registry)
        starts: list[float] = []

        async def flaky() -> str:
            starts.append(time.monotonic())
            if len(starts) <= 2:
                raise OSError("upstream away")
            return "ok"

        sup.add(Job("flaky", flaky, interval_s=10.0, retry_s=0.05))
        await asyncio.sleep(0.4)
        view = sup.view()
        text = generate_latest(registry).decode()
        await sup.stop()
        return view, text, starts

    view, text, _ = asyncio.run(scenario())
    (job,) = view
    assert job["runs"] == 3 and job["failures"] == 2 and job["failures_in_a_row"] == 0 and job["last_error"] == ""
    assert job["last_success"] is not None and job["next_run"] is not None  # the next pass, an interval away
    assert 'p13n_hub_job_failures_total{job_name="flaky"} 2.0' in text and 'p13n_hub_job_runs_total{job_name="flaky"} 3.0' in text


def test_jobs_needing_nats_wait_and_stop_is_prompt() -> None:
    async def scenario() -> tuple[int, int, bool]:
        sup = Supervisor()
        calls = {"nats": 0, "local": 0}

        async def count(name: str) -> None:
            calls[name] += 1

        sup.add(Job("needs-nats", lambda: count("nats"), interval_s=0.01, needs_nats=True))
        sup.add(Job("local", lambda: count("local"), interval_s=0.01))
        await asyncio.sleep(0.1)
        before = calls["nats"]
        sup.ready.set()
        await asyncio.sleep(0.1)
        tasks = list(sup.tasks.values())
        await sup.stop()
        return before, calls["nats"], all(t.done() for t in tasks) and not sup.tasks

    before, after, stopped = asyncio.run(scenario())
    assert before == 0 and after > 0  # it waited for NATS, then ran
    assert stopped  # every task cancelled and awaited


def test_a_follower_that_fails_is_restarted() -> None:
    async def scenario() -> dict[str, object]:
        sup = Supervisor()
        runs = 0

        async def follow() -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise ConnectionError("stream gone")
            await asyncio.sleep(3600)  # following

        sup.add(Job("follower", follow, follower=True, retry_s=0.02))
        await asyncio.sleep(0.2)
        (view,) = sup.view()
        await sup.stop()
        return view

    view = asyncio.run(scenario())
    assert view["kind"] == "follower" and view["runs"] == 2 and view["failures"] == 1 and view["running"] is True


def test_names_are_unique() -> None:
    async def scenario() -> None:
        sup = Supervisor()

        async def nothing() -> None:
            return None

        sup.add(Job("a", nothing, interval_s=1))
        try:
            with pytest.raises(ValueError, match="already registered"):
                sup.add(Job("a", nothing, interval_s=1))
        finally:
            await sup.stop()

    asyncio.run(scenario())


def test_the_backoff_doubles_up_to_the_interval() -> None:
    sup = Supervisor.__new__(Supervisor)  # no event loop needed for the policy
    job = Job("j", lambda: asyncio.sleep(0), interval_s=4.0, retry_s=0.5)
    delays = []
    for n in range(1, 6):
        job.failures_in_a_row = n
        delays.append(sup._delay(job))
    for n, d in enumerate(delays, start=1):
        expected = min(0.5 * 2 ** (n - 1), 4.0)
        assert 0.8 * expected <= d <= 1.2 * expected
    job.failures_in_a_row = 0
    assert sup._delay(job) == 4.0  # no jitter configured: the interval


def test_stop_closes_what_jobs_hold() -> None:
    closed: list[str] = []

    async def scenario() -> None:
        sup = Supervisor()

        async def nothing() -> None:
            return None

        sup.add(Job("broken-close", nothing, interval_s=10, close=lambda: 1 / 0))  # type: ignore[func-returns-value]
        sup.add(Job("with-client", nothing, interval_s=10, close=lambda: closed.append("client")))
        sup.add(Job("plain", nothing, interval_s=10))
        await asyncio.sleep(0.05)
        await sup.stop()

    asyncio.run(scenario())
    assert closed == ["client"]  # and a failing close did not stop the others
