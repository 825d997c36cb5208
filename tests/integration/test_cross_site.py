"""A hostile site on another origin tries, in a real Chromium, to grant consent and send
events for our visitors (a no-CORS fetch, a beacon, an auto-submitted form): each is
refused; the same calls from the site's own pages work."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import AgentFactory, Origin
from tests.integration.helpers import fetch, metric, wait_for

HOSTILE_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" action="{agent}/_p13n/consent" enctype="text/plain" target="sink">
<input name='{{"categories": ["analytics", "personalization"], "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
  var body = JSON.stringify({{categories: ["analytics", "personalization"]}});
  fetch("{agent}/_p13n/consent", {{method: "POST", mode: "no-cors", credentials: "include",
    headers: {{"Content-Type": "text/plain"}}, body: body}}).then(function () {{ window.fetched = true; }});
  navigator.sendBeacon("{agent}/_p13n/collect",
    JSON.stringify({{events: [{{type: "page_view", url: "{agent}/p/dr01"}}]}}));
  document.getElementById("f").submit();
</script></body></html>"""


@pytest.fixture
def hostile_site() -> Iterator[tuple[ThreadingHTTPServer, dict[str, str]]]:
    page: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, page
    server.shutdown()
    server.server_close()


def health(url: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(fetch(url + "/_p13n/healthz").body)
    return data


def test_another_site_cannot_choose_consent_or_send_events_for_our_visitors(
    browser: object, origin: Origin, start_agent: AgentFactory, hostile_site: tuple[ThreadingHTTPServer, dict[str, str]]
) -> None:
    agent = start_agent(origin.url, DEFAULT_CONSENT="necessary", NATS_URL="nats://127.0.0.1:1")
    server, page = hostile_site
    page["html"] = HOSTILE_PAGE.format(agent=agent.url)
    context = browser.new_context()  # type: ignore[attr-defined]
    tab = context.new_page()
    # the visitor has been on our site before (a first-party page on the agent's origin)
    tab.goto(agent.url + "/p/dr01")
    # … and now visits the hostile site, which is another host (localhost vs 127.0.0.1)
    tab.goto(f"http://localhost:{server.server_address[1]}/")
    tab.wait_for_function("window.fetched === true")
    scraped = lambda: fetch(agent.url + "/_p13n/metrics").text  # noqa: E731
    wait_for(lambda: metric(scraped(), "p13n_edge_collect_rejected_total", reason="cross_site") >= 3)
    assert health(agent.url)["outbox_depth"] == 0  # no consent record, no event
    cookies = {c["name"] for c in context.cookies(agent.url)}
    assert "p13n_consent" not in cookies and "p13n_id" not in cookies

    # the site's own page may: same-origin calls are answered
    tab.goto(agent.url + "/p/dr01")
    status = tab.evaluate(
        """() => fetch('/_p13n/consent', {method: 'POST', headers: {'Content-Type': 'text/plain'},
             body: JSON.stringify({categories: ['analytics']})}).then(r => r.status)"""
    )
    assert status == 200
    assert "p13n_consent" in {c["name"] for c in context.cookies(agent.url)}
    wait_for(lambda: int(str(health(agent.url)["outbox_depth"])) >= 1)
    context.close()
