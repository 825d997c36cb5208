"""One-round-trip SSI through a real nginx: one agent call per page, fallbacks when down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.nginx_config import NginxOptions
from p13n.procs import DEFAULT_TEMPLATES, free_port, p13n_command, spawn, start_nginx, wait_http
from tests.conftest import AgentFactory, Origin
from tests.integration.helpers import DESKTOP_UA, MOBILE_UA, fetch, metric


@pytest.fixture(scope="module")
def echo_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    work = tmp_path_factory.mktemp("echo-origin")
    port = free_port()
    child = spawn(
        "origin-echo",
        p13n_command("origin", "serve", "--port", str(port), "--templates", str(DEFAULT_TEMPLATES), "--ssi", "--ssi-echo"),
        work,
    )
    wait_http(child, f"http://127.0.0.1:{port}/healthz")
    yield Origin(f"http://127.0.0.1:{port}", port, child)
    child.stop()


def test_one_agent_call_per_page_and_fallbacks_when_stopped(
    echo_origin: Origin, start_agent: AgentFactory, nginx_bin: str, tmp_path: Path
) -> None:
    agent = start_agent(echo_origin.url)
    port = free_port()
    nginx = start_nginx(
        tmp_path / "nginx",
        NginxOptions(
            mode="ssi",
            agent=f"127.0.0.1:{agent.port}",
            origin=echo_origin.url,
            listen=f"127.0.0.1:{port}",
            echo_slots=("hero", "offer", "recs"),
            geo_header="$http_x_test_country",
        ),
        worker_processes="1",
    )
    try:
        url = f"http://127.0.0.1:{port}/p/dr01"
        mobile = fetch(url, {"User-Agent": MOBILE_UA, "Cookie": "p13n_id=returning0visitor00001"})
        german = fetch(url, {"User-Agent": DESKTOP_UA, "X-Test-Country": "DE"})
        for reply in (mobile, german):
            assert reply.status == 200 and "<!--#" not in reply.text and "<p13n-slot" not in reply.text
            assert reply.text.count('class="card" data-p13n-item=') == 4
        assert mobile.variants()[0] == "mobile-app" and german.variants()[0] == "dach-winter"
        assert "first-visit" in german.variants() and (german.headers["Set-Cookie"] or "").startswith("p13n_id=")
        assert "<h1>Linen Wrap Dress</h1>" in mobile.text
        text = fetch(agent.url + "/_p13n/metrics").text
        assert metric(text, "p13n_edge_requests_total", route="auth", status="2xx") == 2
        assert metric(text, "p13n_edge_requests_total", route="slot", status="2xx") == 0
        agent.stop()
        down = fetch(url, {"User-Agent": MOBILE_UA})
        assert down.status == 200 and down.variants()[:2] == ["fallback", "fallback"]
    finally:
        nginx.stop()
