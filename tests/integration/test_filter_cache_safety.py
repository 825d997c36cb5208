"""Filter mode under attack: cache poisoning by unkeyed headers, one visitor's page
reaching another, Vary, and paths reaching the origin exactly as received.

The origin here is a real HTTP server the test starts; it records every request and
answers like a careless site would: it builds links from ``X-Forwarded-Host``, greets
logged-in users by name, varies on ``Accept-Language`` and marks all of it public.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import AgentFactory, NginxFactory
from tests.integration.helpers import fetch


@dataclass
class RecordingOrigin:
    url: str
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def careless_origin() -> Iterator[RecordingOrigin]:
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append((self.path, headers))
            host = headers.get("x-forwarded-host") or headers.get("host", "")
            cookie = headers.get("cookie", "")
            user = cookie.split("session=", 1)[1].split(";", 1)[0] if "session=" in cookie else ""
            auth = headers.get("authorization", "")
            lang = headers.get("accept-language", "en")[:2]
            greeting = f"Hello {user or auth or 'guest'}"
            word = {"de": "Willkommen", "fr": "Bienvenue"}.get(lang, "Welcome")
            body = (
                f'<html><body><a href="https://{html.escape(host)}/cart">cart</a>'
                f"<p>{html.escape(greeting)}</p><p>{word}</p>"
                f'<p13n-slot name="hero">fallback</p13n-slot><p>path={html.escape(self.path)}</p></body></html>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "public, max-age=300")  # careless: even for logged-in users
            self.send_header("Vary", "Accept-Language")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield RecordingOrigin(f"http://127.0.0.1:{port}", int(port), seen)
    server.shutdown()
    server.server_close()


def test_unkeyed_headers_cannot_poison_the_shared_shell(
    careless_origin: RecordingOrigin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(careless_origin.url)
    nginx = start_nginx_proxy("filter", agent.port, careless_origin.url)
    attack = fetch(nginx.url + "/landing", {"X-Forwarded-Host": "evil.example", "X-Original-Url": "/admin"})
    assert attack.status == 200 and "evil.example" not in attack.text
    victim = fetch(nginx.url + "/landing")
    assert "evil.example" not in victim.text and 'href="https://127.0.0.1' in victim.text
    # the origin never saw the attacker's copy of those headers
    assert all(h.get("x-forwarded-host") != "evil.example" and "x-original-url" not in h for _, h in careless_origin.requests)
    # a different Host is a different cache entry: it never answers the site's visitors
    fetch(agent.url + "/host-test", {"Host": "evil.example"})
    normal = fetch(agent.url + "/host-test")
    assert "evil.example" not in normal.text
    assert len([p for p, _ in careless_origin.requests if p == "/host-test"]) == 2


def test_one_visitors_page_never_reaches_another(careless_origin: RecordingOrigin, start_agent: AgentFactory) -> None:
    agent = start_agent(careless_origin.url)
    alice = fetch(agent.url + "/account", {"Cookie": "session=alice; p13n_consent=necessary"})
    assert "Hello alice" in alice.text
    bob = fetch(agent.url + "/account")
    assert "Hello guest" in bob.text and "alice" not in bob.text
    token = fetch(agent.url + "/account", {"Authorization": "Bearer carol-token"})
    assert "carol-token" in token.text
    anon = fetch(agent.url + "/account")
    assert "carol" not in anon.text and "Hello guest" in anon.text
    # the anonymous copy is shared (cached once), the private ones always went to the origin
    assert len([p for p, _ in careless_origin.requests if p == "/account"]) == 3
    # a logged-in user is never answered from the shared copy either
    again = fetch(agent.url + "/account", {"Cookie": "session=dave"})
    assert "Hello dave" in again.text
    # the agent's own cookies are not the site's business: not forwarded, not private
    fetch(agent.url + "/account", {"Cookie": "p13n_id=abcdefghijklmnopqrstuv; p13n_consent=analytics"})
    assert len([p for p, _ in careless_origin.requests if p == "/account"]) == 4
    assert all("p13n_" not in h.get("cookie", "") for _, h in careless_origin.requests)


def test_vary_keeps_one_copy_per_language(careless_origin: RecordingOrigin, start_agent: AgentFactory) -> None:
    agent = start_agent(careless_origin.url)
    assert "Welcome" in fetch(agent.url + "/home", {"Accept-Language": "en"}).text
    assert "Willkommen" in fetch(agent.url + "/home", {"Accept-Language": "de"}).text
    assert "Welcome" in fetch(agent.url + "/home", {"Accept-Language": "en"}).text


def test_paths_reach_the_origin_exactly_as_received(
    careless_origin: RecordingOrigin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory
) -> None:
    agent = start_agent(careless_origin.url)
    nginx = start_nginx_proxy("filter", agent.port, careless_origin.url)
    for target in ("/x/%252e%252e/admin", "/x/%2e%2e/admin?next=%2F", "/a%2Fb/c"):
        fetch(nginx.url + target)
        fetch(agent.url + target)
    received = {p for p, _ in careless_origin.requests}
    assert received == {"/x/%252e%252e/admin", "/x/%2e%2e/admin?next=%2F", "/a%2Fb/c"}
