"""Load shedding: the loop-lag estimate, and what an overloaded agent decides."""

from __future__ import annotations

import asyncio
import time

from edge_agent.overload import SAMPLE_S, WEIGHT, LoadShedder
from edge_agent.pages import build_context, decide_slots
from models.content import build_content, load_content
from p13n.procs import DEFAULT_TEMPLATES


def test_a_lasting_lag_sheds_one_stall_does_not_and_a_zero_threshold_never_sheds() -> None:
    shedder = LoadShedder(threshold_s=0.02)
    shedder.observe(0.06)  # one stall of 60 ms: the requests behind it run, none is shed
    assert not shedder.active and abs(shedder.lag_s - WEIGHT * 0.06) < 1e-12
    for _ in range(3):  # a queue that lasts
        shedder.observe(0.03)
    assert shedder.active
    samples = 0
    while shedder.active:
        shedder.observe(0.0)
        samples += 1
    assert samples == 1  # ~25 ms of average lag falls under 20 ms with the first quiet sample
    never = LoadShedder(threshold_s=0.0)
    for _ in range(10):
        never.observe(10.0)
    assert not never.active and never.lag_s > 9.0  # still measured (the lag metric)


def test_a_blocked_loop_turns_shedding_on_and_a_free_one_off() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        shedder = LoadShedder(threshold_s=0.02)
        task = asyncio.create_task(shedder.run())
        await asyncio.sleep(SAMPLE_S * 4)
        calm = shedder.active
        for _ in range(4):  # requests that keep the loop 60 ms behind
            time.sleep(0.06)
            await asyncio.sleep(0)
        await asyncio.sleep(SAMPLE_S)
        loaded = shedder.active
        await asyncio.sleep(0.2)
        recovered = not shedder.active
        task.cancel()
        return calm, loaded, recovered

    calm, loaded, recovered = asyncio.run(scenario())
    assert (calm, loaded, recovered) == (False, True, True)


def test_a_shed_page_falls_back_everywhere_without_deciding() -> None:
    bundle = load_content(build_content(DEFAULT_TEMPLATES))
    headers = {"cookie": "p13n_id=sheddingvisitor000000001", "user-agent": "Mozilla/5.0"}
    slots = [("hero", {}), ("offer", {}), ("banner", {}), ("recs", {})]

    def context():  # type: ignore[no-untyped-def]
        return build_context(
            headers,
            "/",
            geo_header="x-geo-country",
            cookie_name="p13n_id",
            default_consent=("necessary", "analytics", "personalization"),
        )

    ctx = context()
    shed = decide_slots(ctx, bundle, slots, 50.0, shed=True)
    assert {n: (o.html, o.reason) for n, o in shed.outcomes.items()} == {n: (None, "overload") for n, _ in slots}
    assert ctx.exposures == [] and "segments" not in ctx.attrs  # no experiment exposure, no rule work
    normal = decide_slots(context(), bundle, slots, 50.0)
    assert normal.outcomes["banner"].reason == "experiment" and normal.outcomes["hero"].html
