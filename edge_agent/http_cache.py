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
