"""What a visitor can reach of the agent: not its metrics, through nginx or directly
from a peer the operator did not allow; bad query input is a 400, never a 500."""

from __future__ import annotations

from tests.conftest import AgentFactory, NginxFactory, Origin
from tests.integration.helpers import fetch


def test_metrics_are_for_the_operator_only(origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory) -> None:
    agent = start_agent(origin.url)
    nginx = start_nginx_proxy("filter", agent.port, origin.url)
    assert fetch(agent.url + "/_p13n/metrics").status == 200  # the scraper on the agent's port
    assert fetch(nginx.url + "/_p13n/metrics").status == 404  # a visitor through nginx
    assert fetch(nginx.url + "/_p13n/sdk.js").status == 200  # the rest of /_p13n/ still works
    strict = start_agent(origin.url, METRICS_ALLOW="10.9.9.9/32")
    refused = fetch(strict.url + "/_p13n/metrics")
    assert refused.status == 403 and b"P13N_EDGE_METRICS_ALLOW" in refused.body


def test_a_broken_page_url_is_a_400_with_a_reason(origin: Origin, start_agent: AgentFactory) -> None:
    agent = start_agent(origin.url)
    for page in ("http://[", "http://[::1", "https://x:99999999999/"):
        reply = fetch(agent.url + "/_p13n/decide?slots=hero&page=" + page)
        assert reply.status in (200, 400), (page, reply.status)
    bad = fetch(agent.url + "/_p13n/decide?slots=hero&page=http://[")
    assert bad.status == 400 and b"bad_page" in bad.body
