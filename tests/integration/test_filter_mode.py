"""Filter mode: the agent as nginx's upstream (and on its own) against a real origin."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentFactory, NginxFactory, Origin, _start_origin
from tests.integration.helpers import DESKTOP_UA, MOBILE_UA, Reply, fetch, metric


@pytest.fixture(scope="module")
def gzip_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    from p13n.procs import DEFAULT_TEMPLATES, free_port, p13n_command, spawn, wait_http

    work = tmp_path_factory.mktemp("gzip-origin")
    port = free_port()
    child = spawn(
        "origin-gzip", p13n_command("origin", "serve", "--port", str(port), "--templates", str(DEFAULT_TEMPLATES), "--gzip"), work
    )
    wait_http(child, f"http://127.0.0.1:{port}/healthz")
    yield Origin(f"http://127.0.0.1:{port}", port, child)
    child.stop()


def test_page_through_nginx_is_personalized_with_exact_length(
    origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(origin.url)
    # the country comes from the operator's geo source (here a test header); nginx overwrites X-Geo-Country
    nginx = start_nginx_proxy("filter", agent.port, origin.url, geo_header="$http_x_test_country")
    mobile = fetch(nginx.url + "/p/ja02", {"User-Agent": MOBILE_UA})
    german = fetch(nginx.url + "/p/ja02", {"User-Agent": DESKTOP_UA, "X-Test-Country": "de", "X-Geo-Country": "fr"})
    for reply in (mobile, german):
        assert reply.status == 200
        assert "<p13n-slot" not in reply.text
        assert reply.headers["Cache-Control"] == "private"
        assert "cookie" not in (reply.headers.get("Vary") or "").lower()
        assert reply.headers["ETag"] is None
    assert mobile.variants()[0] == "mobile-app" and german.variants()[0] == "dach-winter"
    direct = fetch(agent.url + "/p/ja02", {"User-Agent": MOBILE_UA, "Cookie": "p13n_id=abcdefghijklmnopqrstuv"})
    assert int(direct.headers["Content-Length"]) == len(direct.body)


def test_gzip_origin_bodies_are_rewritten(gzip_origin: Origin, start_agent: AgentFactory) -> None:
    raw = fetch(gzip_origin.url + "/p/dr01", {"Accept-Encoding": "gzip"})
    assert raw.headers["Content-Encoding"] == "gzip" and b"<p13n-slot" in gzip.decompress(raw.body)
    agent = start_agent(gzip_origin.url)
    reply = fetch(agent.url + "/p/dr01", {"User-Agent": MOBILE_UA, "Accept-Encoding": "gzip"})
    assert reply.status == 200 and reply.headers["Content-Encoding"] is None
    assert "<p13n-slot" not in reply.text and reply.variants()[0] == "mobile-app"


def test_non_html_passes_through_untouched(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url)
    via_agent = fetch(agent.url + "/api/items")
    direct = fetch(origin.url + "/api/items")
    assert via_agent.body == direct.body and json.loads(via_agent.body)[0]["id"] == "dr01"
    assert via_agent.headers["Content-Type"] == "application/json"
    payload = b"x" * 300_000
    echo = fetch(agent.url + "/api/echo", {"Content-Type": "application/octet-stream"}, method="POST", data=payload)
    assert echo.status == 200 and echo.body == payload and echo.headers["x-echo-method"] == "POST"


def test_shareable_shells_are_cached_in_memory_and_sqlite(origin: Origin, start_agent: AgentFactory, tmp_path: Path) -> None:
    agent = start_agent(origin.url)
    for _ in range(3):
        assert fetch(agent.url + "/c/shoes", {"User-Agent": DESKTOP_UA}).status == 200
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_shell_cache_total", result="miss") == 1
    assert metric(text, "p13n_edge_shell_cache_total", result="memory") == 2
    data_dir = agent.data_dir
    agent.stop()
    again = start_agent(origin.url, port=agent.port, DATA_DIR=str(data_dir))  # same Host: same cache key
    assert fetch(again.url + "/c/shoes", {"User-Agent": DESKTOP_UA}).status == 200
    text = fetch(again.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_shell_cache_total", result="sqlite") == 1


def test_a_page_from_the_memory_cache_is_the_page_the_origin_fetch_gave(origin: Origin, start_agent: AgentFactory) -> None:
    """The first request fetches the shell (full handler); the next ones find it in
    memory (the direct path): same status, bytes and headers."""
    agent = start_agent(origin.url)
    headers = {"User-Agent": MOBILE_UA, "Cookie": "p13n_id=abcdefghijklmnopqrstuv"}
    replies = [fetch(agent.url + "/p/dr01?ref=x", headers) for _ in range(3)]
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_shell_cache_total", result="miss") == 1
    assert metric(text, "p13n_edge_shell_cache_total", result="memory") == 2
    assert metric(text, "p13n_edge_requests_total", route="page", status="2xx") == 3

    def shape(reply: Reply) -> tuple[int, bytes, list[tuple[str, str]]]:
        kept = sorted((k.lower(), v) for k, v in reply.headers.items() if k.lower() not in ("date", "server"))
        return reply.status, reply.body, kept

    first = shape(replies[0])
    assert first[0] == 200 and b"<p13n-slot" not in first[1] and replies[0].variants()[0] == "mobile-app"
    assert ("cache-control", "private") in first[2] and ("content-length", str(len(first[1]))) in first[2]
    assert all(shape(r) == first for r in replies[1:])
    # a new visitor on the direct path still gets the visitor cookie
    new = fetch(agent.url + "/p/dr01?ref=x", {"User-Agent": MOBILE_UA})
    assert (new.headers.get("Set-Cookie") or "").startswith("p13n_id=")


def test_private_pages_are_never_cached_and_keep_origin_cookies(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url)
    for _ in range(2):
        reply = fetch(agent.url + "/account", {"User-Agent": DESKTOP_UA})
        assert reply.status == 200 and "<p13n-slot" not in reply.text
        cookies = reply.headers.get_all("Set-Cookie") or []
        assert any(c.startswith("origin_session=abc") for c in cookies)
        assert any(c.startswith("p13n_id=") for c in cookies)
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_shell_cache_total", result="miss") == 2


def test_failed_decisions_render_fallbacks_and_count_the_reason(
    origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(origin.url, DECISION_DEADLINE_MS="0")
    nginx = start_nginx_proxy("filter", agent.port, origin.url)
    reply = fetch(nginx.url + "/p/dr01", {"User-Agent": MOBILE_UA})
    assert reply.status == 200
    assert reply.variants()[:2] == ["fallback", "fallback"] and "<p13n-slot" not in reply.text
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_fallbacks_total", reason="deadline") == 3


def test_debug_header_explains_decisions(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url, DEBUG="true")
    reply = fetch(agent.url + "/p/dr01", {"User-Agent": MOBILE_UA})
    debug = reply.headers["X-P13N-Debug"]
    assert "bundle=1" in debug and "hero=variant:mobile-app" in debug and "recs=recommend:popular" in debug


def test_stopped_agent_falls_back_to_the_origin_page(
    origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(origin.url)
    nginx = start_nginx_proxy("filter", agent.port, origin.url)
    agent.stop()
    reply = fetch(nginx.url + "/p/dr01", {"User-Agent": MOBILE_UA})
    assert reply.status == 200 and reply.headers["Cache-Control"] == "private"
    # the browser shows the unknown element's children: the fallbacks
    assert reply.variants()[:2] == ["fallback", "fallback"]


def test_unreachable_origin_is_a_clear_502(start_agent: AgentFactory) -> None:
    from p13n.procs import free_port

    agent = start_agent(f"http://127.0.0.1:{free_port()}", ORIGIN_TIMEOUT_S="1")
    reply = fetch(agent.url + "/p/dr01")
    assert reply.status == 502 and json.loads(reply.body)["error"]["reason"] == "origin_unavailable"


def test_unsafe_page_is_served_byte_for_byte(tmp_path: Path, start_agent: AgentFactory) -> None:
    templates = tmp_path / "tpl"
    import shutil

    from p13n.procs import DEFAULT_TEMPLATES

    shutil.copytree(DEFAULT_TEMPLATES, templates)
    home = templates / "pages" / "home.html"
    head, _, tail = home.read_text().rpartition("</p13n-slot>")
    home.write_text(head + tail)  # the last slot is left unclosed
    o = _start_origin(tmp_path / "o", ssi=False, templates=templates)
    try:
        agent = start_agent(o.url)
        original = fetch(o.url + "/")
        reply = fetch(agent.url + "/")
        assert reply.body == original.body
        assert metric(fetch(agent.url + "/_p13n/metrics").text, "p13n_edge_fallbacks_total", reason="unclosed_slot") == 1
    finally:
        o.child.stop()
