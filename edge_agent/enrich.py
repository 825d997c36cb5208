"""Edge enrichment of collected events (sans-IO).

Adds what only the edge knows and removes what must not travel: event id (UUID when
absent), received time, device class, country, the visitor's local hour (from the SDK's
``tz_offset``), referrer domain and UTM parameters; the visitor id from the cookie;
known user ids replaced by their pseudonym. Raw IPs are never read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from edge_agent.context import country, device_class
from models.pseudonym import pseudonym

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
#: Client-sent fields the edge always sets itself.
_SERVER_FIELDS = ("received_at", "edge", "anonymous_id")


def _domain(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "")[:253]
    except ValueError:
        return ""


def _utm(url: str) -> dict[str, str]:
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    return {k: v[:256] for k, v in parse_qsl(query) if k in UTM_KEYS}


class RequestFacts:
    """What every event of one request shares: computed once per request."""

    __slots__ = ("country", "device", "moment", "received_at")

    def __init__(self, headers: Mapping[str, str], geo_header: str, now: datetime | None = None) -> None:
        self.moment = now or datetime.now(UTC)
        self.received_at = self.moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.device = device_class(headers.get("user-agent", ""))
        self.country = country(headers, geo_header)


@lru_cache(maxsize=4096)
def _url_facts(url: str) -> tuple[tuple[str, str], ...]:
    return tuple(_utm(url).items())


def enrich(
    event: dict[str, Any],
    headers: Mapping[str, str],
    *,
    edge_id: str,
    visitor_id: str,
    geo_header: str,
    pseudonym_key: bytes,
    now: datetime | None = None,
    facts: RequestFacts | None = None,
) -> dict[str, Any]:
    """Return a new, enriched event; ``event`` is left untouched."""
    f = facts or RequestFacts(headers, geo_header, now)
    moment = f.moment
    out = {k: v for k, v in event.items() if k not in _SERVER_FIELDS}
    if not isinstance(out.get("event_id"), str) or not out.get("event_id"):
        out["event_id"] = os.urandom(16).hex()  # 128 random bits, as uuid4 but without its object
    out["received_at"] = f.received_at
    out["edge"] = edge_id
    if visitor_id:
        out["anonymous_id"] = visitor_id
    if isinstance(out.get("user_id"), str) and out["user_id"]:
        out["user_id"] = pseudonym(out["user_id"], pseudonym_key)
    raw_ctx = out.get("context")
    client_ctx: dict[str, Any] = raw_ctx if isinstance(raw_ctx, dict) else {}
    ctx: dict[str, Any] = {k: v for k, v in client_ctx.items() if isinstance(v, (str, int, float, bool)) and k != "ip"}
    ctx["device"] = f.device
    ctx["country"] = f.country
    offset = client_ctx.get("tz_offset")
    if isinstance(offset, (int, float)) and not isinstance(offset, bool) and -840 <= offset <= 840:
        ctx["local_hour"] = (moment + timedelta(minutes=float(offset))).hour
    url = out.get("url") if isinstance(out.get("url"), str) else headers.get("referer", "")
    referrer = out.get("referrer") if isinstance(out.get("referrer"), str) else ""
    if referrer:
        ctx["referrer_domain"] = _domain(referrer)
    ctx.update(_url_facts(url or ""))
    out["context"] = ctx
    return out
