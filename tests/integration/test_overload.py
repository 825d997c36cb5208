"""Past its capacity the page path fails open fast: the agent sheds (fallbacks, reason
``overload``) instead of queueing, and nginx prints a slot's stub when the agent does
not answer within the slot timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import AgentFactory, NginxFactory, Origin
from tests.integration.helpers import DESKTOP_UA, fetch, metric, wait_for

RETURNING = {"User-Agent": DESKTOP_UA, "Cookie": "p13n_id=overloadvisitor000000001"}


def test_an_overloaded_agent_sheds_to_fallbacks_and_recovers(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    # a 3 ms lag budget: hundreds of pages at once are more than this agent takes in time
    agent = start_agent(ssi_origin.url, SHED_LAG_MS="3")
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    assert fetch(nginx.url + "/p/dr01", RETURNING).variants()[0] != "fallback"

    async def burst() -> list[tuple[int, dict[str, object]]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as http:

            async def one() -> tuple[int, dict[str, object]]:
                url = agent.url + "/_p13n/decide?slots=hero,offer,banner,recs&page=/p/dr01"
                async with http.get(url, headers=RETURNING) as r:
                    return r.status, await r.json() if r.status == 200 else {}

            return await asyncio.gather(*(one() for _ in range(1500)))

    replies = asyncio.run(burst())
    assert {status for status, _ in replies} == {200}  # never a 5xx: shed pages still answer
    reasons = [body["slots"]["hero"]["reason"] for _, body in replies]  # type: ignore[index]
    shed = reasons.count("overload")
    print(f"overload: {shed} of {len(replies)} pages shed")
    assert shed > 0 and set(reasons) <= {"overload", "variant", "default"}
    metrics = fetch(agent.url + "/_p13n/metrics").text
    assert metric(metrics, "p13n_edge_loop_lag_seconds") >= 0
    assert metric(metrics, "p13n_edge_fallbacks_total", reason="overload") >= shed * 4  # every slot of a shed page

    # the queue gone, pages through nginx are decided again
    wait_for(lambda: fetch(nginx.url + "/p/dr01", RETURNING).variants()[0] != "fallback", timeout_s=10)


@pytest.fixture
def silent_agent() -> Iterator[int]:
    """A port that accepts connections and never answers (a wedged agent)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_wedged_agent_costs_a_page_the_slot_timeout_not_more(
    ssi_origin: Origin, silent_agent: int, start_nginx_proxy: NginxFactory
) -> None:
    nginx = start_nginx_proxy("ssi", silent_agent, ssi_origin.url, slot_timeout_ms=150)  # type: ignore[arg-type]
    started = time.monotonic()
    reply = fetch(nginx.url + "/p/dr01", RETURNING)
    elapsed = time.monotonic() - started
    assert reply.status == 200 and "<!--#" not in reply.text
    assert reply.variants() == ["fallback", "fallback"]  # hero and offer print their stubs
    assert 'data-p13n-item="' in reply.text or "recs" in reply.text
    # three includes at 150 ms each, against 2 s each for the other agent endpoints
    assert elapsed < 1.5, elapsed
