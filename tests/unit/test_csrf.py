"""Which state-changing requests count as cross-site."""

from __future__ import annotations

import pytest

from edge_agent.csrf import cross_site_reason

ALLOWED = frozenset({"https://www.shop.example"})


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # not a browser page: server-side clients
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "none"}, False),
        ({"sec-fetch-site": "cross-site", "origin": "https://evil.example"}, True),
        ({"sec-fetch-site": "same-site", "origin": "https://blog.shop.example"}, True),
        ({"origin": "https://shop.example", "host": "shop.example"}, False),
        ({"origin": "http://127.0.0.1:8080", "host": "127.0.0.1"}, False),  # nginx's $host has no port
        ({"origin": "http://127.0.0.1:8080", "host": "127.0.0.1:9090"}, True),
        ({"origin": "https://evil.example", "host": "shop.example"}, True),
        ({"origin": "null", "host": "shop.example"}, True),
        ({"origin": "https://www.shop.example", "sec-fetch-site": "same-site"}, False),  # listed by the operator
    ],
)
def test_cross_site_requests_are_refused(headers: dict[str, str], refused: bool) -> None:
    assert bool(cross_site_reason(headers, ALLOWED)) is refused
