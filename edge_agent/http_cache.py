"""Shared-cache policy for origin shells (sans-IO, RFC 9111 subset).

A shell may be cached only when a shared cache could store it: 200, no ``Set-Cookie``,
no ``private``/``no-store``/``no-cache``, no ``Vary: *``/``Vary: Cookie``, and an
explicit freshness lifetime (``s-maxage``, ``max-age`` or ``Expires``).
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

#: Longest time a shell is kept, whatever the origin says (seconds).
MAX_SHELL_TTL_S = 24 * 3600


def _directives(cache_control: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in cache_control.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def shell_ttl(status: int, headers: Mapping[str, str], now: float) -> float:
    """Seconds a shell may be reused for every visitor; 0 means do not cache.

    ``headers`` keys must be lower-case.
    """
    if status != 200 or "set-cookie" in headers:
        return 0.0
    vary = {v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()}
    if "*" in vary or "cookie" in vary or "authorization" in vary:
        return 0.0
    cc = _directives(headers.get("cache-control", ""))
    if {"private", "no-store", "no-cache"} & cc.keys():
        return 0.0
    for key in ("s-maxage", "max-age"):
        if key in cc:
            try:
                return float(min(max(int(cc[key]), 0), MAX_SHELL_TTL_S))
            except ValueError:
                return 0.0
    if "expires" in headers:
        try:
            expires = parsedate_to_datetime(headers["expires"]).timestamp()
        except (TypeError, ValueError):
            return 0.0
        return float(min(max(expires - now, 0.0), MAX_SHELL_TTL_S))
    return 0.0


# ---------------------------------------------------------------- request side
#: Request headers a shell fetch forwards to the origin by default (``P13N_EDGE_FORWARD_HEADERS``).
DEFAULT_FORWARD_HEADERS = (
    "accept",
    "accept-language",
    "user-agent",
    "referer",
    "cookie",
    "authorization",
    "x-forwarded-proto",
    "x-request-id",
)


def cache_key(host: str, target: str) -> str:
    """The primary cache key: host (lower-case, as the site's nginx passed it) and the
    request target exactly as received (raw path and query, never decoded)."""
    return host.strip().lower() + target


def vary_names(headers: Mapping[str, str]) -> tuple[str, ...] | None:
    """The request headers a response varies on (lower-case, sorted); None when it
    varies on something no shared copy can honour (``*``, cookies, credentials)."""
    names = {v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()}
    if names & {"*", "cookie", "authorization"}:
        return None
    return tuple(sorted(names))


def vary_values(names: tuple[str, ...], request: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The request's values of ``names`` (the secondary key a stored copy is kept under)."""
    return tuple((n, request.get(n, "")) for n in names)


def site_cookies(cookie_header: str, own: frozenset[str]) -> str:
    """The Cookie header without the agent's own cookies and the ignored ones."""
    kept = []
    for pair in cookie_header.split(";"):
        name = pair.split("=", 1)[0].strip()
        if name and name not in own:
            kept.append(pair.strip())
    return "; ".join(kept)


def is_private_request(request: Mapping[str, str], own_cookies: frozenset[str]) -> bool:
    """A request whose answer may be personal: it carries credentials or a site cookie
    (RFC 9111 §3.5; cookies because sites log users in with them). Such a request is
    never answered from the shared cache and its response is never stored."""
    if "authorization" in request:
        return True
    cookie = request.get("cookie", "")
    return bool(cookie) and bool(site_cookies(cookie, own_cookies))


def origin_request_headers(
    request: Mapping[str, str], forward: frozenset[str], own_cookies: frozenset[str], client: str
) -> dict[str, str]:
    """What a shell fetch sends the origin: only the listed headers (an unlisted header
    such as ``X-Forwarded-Host`` cannot change a response that every visitor shares),
    the Cookie header without the agent's own cookies, and forwarding headers the agent
    sets itself from the request it received."""
    out = {k: v for k, v in request.items() if k in forward and k not in ("host", "x-forwarded-for", "x-forwarded-host")}
    if "cookie" in out:
        out["cookie"] = site_cookies(out["cookie"], own_cookies)
        if not out["cookie"]:
            del out["cookie"]
    prior = request.get("x-forwarded-for", "")
    out["x-forwarded-for"] = f"{prior}, {client}" if prior and client else (prior or client)
    out["x-forwarded-host"] = request.get("host", "")
    return out
