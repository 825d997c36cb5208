"""Which origin shells a shared cache may keep, and for how long."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from edge_agent.http_cache import (
    MAX_SHELL_TTL_S,
    cache_key,
    is_private_request,
    origin_request_headers,
    shell_ttl,
    vary_names,
)

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


def test_the_cache_key_is_host_and_the_raw_target() -> None:
    assert cache_key("Shop.Example", "/x/%252e%252e/a?q=1") == "shop.example/x/%252e%252e/a?q=1"
    assert cache_key("evil.example", "/p") != cache_key("shop.example", "/p")


@pytest.mark.parametrize(
    ("vary", "names"),
    [("", ()), ("Accept-Language, accept-encoding", ("accept-encoding", "accept-language")), ("*", None), ("Cookie", None)],
)
def test_vary_names(vary: str, names: tuple[str, ...] | None) -> None:
    assert vary_names({"vary": vary}) == names


def test_requests_with_credentials_or_site_cookies_are_private() -> None:
    own = frozenset({"p13n_id", "p13n_consent", "_ga"})
    assert not is_private_request({}, own)
    assert not is_private_request({"cookie": "p13n_id=abc; _ga=GA1.2; p13n_consent=analytics"}, own)
    assert is_private_request({"cookie": "p13n_id=abc; session=alice"}, own)
    assert is_private_request({"authorization": "Bearer x"}, own)


def test_only_listed_headers_reach_the_origin() -> None:
    request = {
        "host": "shop.example",
        "x-forwarded-host": "evil.example",
        "x-original-url": "/admin",
        "accept-language": "de",
        "cookie": "p13n_id=abc; session=alice",
        "x-forwarded-for": "203.0.113.9",
    }
    out = origin_request_headers(
        request, frozenset({"accept-language", "cookie", "x-forwarded-host"}), frozenset({"p13n_id"}), "10.0.0.1"
    )
    assert out == {
        "accept-language": "de",
        "cookie": "session=alice",
        "x-forwarded-for": "203.0.113.9, 10.0.0.1",
        "x-forwarded-host": "shop.example",  # set from Host, even when listed
    }
