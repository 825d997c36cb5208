"""SSI mode through a real nginx: personalized pages, one context per page, fail-open."""

from __future__ import annotations

import json
import re

from tests.conftest import AgentFactory, NginxFactory, Origin
from tests.integration.helpers import DESKTOP_UA, MOBILE_UA, fetch, metric


def test_page_is_personalized_by_context_and_carries_no_markup(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url, geo_header="$http_x_test_country")
    mobile = fetch(nginx.url + "/p/dr01", {"User-Agent": MOBILE_UA})
    desktop_de = fetch(nginx.url + "/p/dr01", {"User-Agent": DESKTOP_UA, "X-Test-Country": "DE"})
    desktop = fetch(nginx.url + "/p/dr01", {"User-Agent": DESKTOP_UA, "X-Test-Country": "US", "X-Geo-Country": "DE"})
    for reply in (mobile, desktop_de, desktop):
        assert reply.status == 200
        assert "<p13n-slot" not in reply.text and "<!--#" not in reply.text
        assert reply.headers["Cache-Control"] == "private"
        assert "cookie" not in (reply.headers.get("Vary") or "").lower()
        assert 'data-p13n-item="' in reply.text  # recommendations rendered
        assert 'data-p13n-item="dr01"' in reply.text  # the product itself…
        assert reply.text.count('data-p13n-item="dr01"') == 1  # …but not recommended to itself
    assert mobile.variants()[0] == "mobile-app"
    assert desktop_de.variants()[0] == "dach-winter"
    assert desktop.variants()[0] in ("default", "night-owl")
    assert mobile.text != desktop_de.text


def test_visitor_cookie_comes_through_auth_request_and_is_reused(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    first = fetch(nginx.url + "/", {"User-Agent": DESKTOP_UA})
    cookie = first.headers["Set-Cookie"]
    assert cookie and cookie.startswith("p13n_id=") and "HttpOnly" in cookie
    assert "first-visit" in first.variants()
    visitor = cookie.split(";")[0]
    again = fetch(nginx.url + "/", {"User-Agent": DESKTOP_UA, "Cookie": visitor})
    assert again.headers["Set-Cookie"] is None
    assert "first-visit" not in again.variants()


def test_no_identifying_cookie_under_global_privacy_control(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    reply = fetch(nginx.url + "/", {"User-Agent": DESKTOP_UA, "Sec-GPC": "1"})
    assert reply.status == 200 and reply.headers["Set-Cookie"] is None


def test_nginx_caches_shareable_shells(ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    before = json.loads(fetch(ssi_origin.url + "/healthz").body)["pages_served"]
    variants = {fetch(nginx.url + "/p/ac03", {"User-Agent": ua}).variants()[0] for ua in (MOBILE_UA, DESKTOP_UA) * 3}
    after = json.loads(fetch(ssi_origin.url + "/healthz").body)["pages_served"]
    assert after - before == 1  # one shell fetch, six personalized pages
    assert "mobile-app" in variants and len(variants) == 2


def test_three_slots_share_one_page_context(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    pages = 5
    for _ in range(pages):
        assert fetch(nginx.url + "/p/sh01", {"User-Agent": MOBILE_UA}).status == 200
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_page_contexts_total", how="built") == pages
    assert metric(text, "p13n_edge_page_contexts_total", how="reused") == 3 * pages
    assert metric(text, "p13n_edge_requests_total", route="auth", status="2xx") == pages


def test_returning_visitors_skip_the_auth_round_trip(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    pages = 4
    for _ in range(pages):
        reply = fetch(nginx.url + "/p/sh01", {"User-Agent": MOBILE_UA, "Cookie": "p13n_id=returning0visitor00001"})
        assert reply.status == 200 and reply.variants()[0] == "mobile-app" and reply.headers["Set-Cookie"] is None
    bogus = fetch(nginx.url + "/p/sh01", {"User-Agent": MOBILE_UA, "Cookie": "p13n_id=<bad>"})
    assert (bogus.headers["Set-Cookie"] or "").startswith("p13n_id=")  # invalid ids are replaced
    text = fetch(agent.url + "/_p13n/metrics").text
    assert metric(text, "p13n_edge_requests_total", route="auth", status="2xx") == 1  # only the bogus one
    assert metric(text, "p13n_edge_page_contexts_total", how="built") == pages + 1
    assert metric(text, "p13n_edge_page_contexts_total", how="reused") == 2 * pages + 3


def test_stopped_agent_leaves_complete_pages_with_fallbacks(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(ssi_origin.url)
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    assert fetch(nginx.url + "/p/dr01", {"User-Agent": MOBILE_UA}).variants()[0] == "mobile-app"
    agent.stop()
    for path in ("/", "/p/dr01", "/c/shoes"):
        reply = fetch(nginx.url + path, {"User-Agent": MOBILE_UA})
        assert reply.status == 200, path
        assert reply.variants()[:2] == ["fallback", "fallback"], path
        assert "<!--#" not in reply.text and "</html>" in reply.text
        assert reply.headers["Set-Cookie"] is None
    # the recommendation slot's fallback on a product page links to its category
    assert re.search(r'href="/c/dresses"><span class="title">More dresses', fetch(nginx.url + "/p/dr01").text)
