"""Which origin shells a shared cache may keep, and for how long."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from edge_agent.http_cache import MAX_SHELL_TTL_S, shell_ttl

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "ttl"),
    [
        (200, {"cache-control": "public, max-age=60"}, 60.0),
        (200, {"cache-control": "max-age=60, s-maxage=30"}, 30.0),
        (200, {"cache-control": "private, max-age=60"}, 0.0),
        (200, {"cache-control": "no-store"}, 0.0),
        (200, {"cache-control": "no-cache, max-age=60"}, 0.0),
        (200, {"cache-control": "max-age=60", "set-cookie": "a=b"}, 0.0),
        (200, {"cache-control": "max-age=60", "vary": "Accept-Encoding, Cookie"}, 0.0),
        (200, {"cache-control": "max-age=60", "vary": "*"}, 0.0),
        (200, {"cache-control": "max-age=60", "vary": "Accept-Encoding"}, 60.0),
        (200, {}, 0.0),
        (404, {"cache-control": "max-age=60"}, 0.0),
        (200, {"cache-control": "max-age=99999999"}, float(MAX_SHELL_TTL_S)),
        (200, {"cache-control": "max-age=abc"}, 0.0),
        (200, {"expires": formatdate(NOW + 120, usegmt=True)}, 120.0),
        (200, {"expires": "garbage"}, 0.0),
    ],
)
def test_shell_ttl(status: int, headers: dict[str, str], ttl: float) -> None:
    assert shell_ttl(status, headers, NOW) == pytest.approx(ttl)
