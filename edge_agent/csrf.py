"""Cross-site request refusal for the endpoints that change a visitor's state (sans-IO).

``POST /_p13n/consent`` and ``POST /_p13n/collect`` act for the visitor whose cookies
come with the request, so another site must not be able to send them (a ``text/plain``
form or beacon needs no CORS preflight). Browsers say where a request comes from:
``Sec-Fetch-Site`` (every current browser) or, failing that, ``Origin``. A request is
refused when either names another site; requests with neither header are not from a
browser page (server-side clients, the tests) and pass. Origins the operator lists
(``P13N_EDGE_ALLOWED_ORIGINS``) pass too.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

#: ``Sec-Fetch-Site`` values of requests a page of this site (or the user) made.
SAME_SITE_VALUES = frozenset({"same-origin", "none"})


def cross_site_reason(headers: Mapping[str, str], allowed_origins: frozenset[str]) -> str:
    """Why the request must be refused as cross-site, or ``""`` when it may proceed."""
    origin = headers.get("origin", "")
    if origin and origin.lower() in allowed_origins:
        return ""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.lower() in SAME_SITE_VALUES:
            return ""
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:20]})"
    if not origin:
        return ""
    if origin == "null":
        return "request from an opaque origin refused"
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return "malformed Origin header"
    host = headers.get("host", "").lower()
    # behind nginx the Host header may have lost its port: compare host names then
    if netloc == host or (":" not in host and netloc.rsplit(":", 1)[0] == host):
        return ""
    return f"cross-site request refused (Origin: {origin[:100]})"
