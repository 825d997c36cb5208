"""Normalization of validated events into warehouse rows (sans-IO).

UTC timestamps (epoch milliseconds or ISO 8601 in, ``YYYY-MM-DDTHH:MM:SS.mmmZ`` out),
canonical URLs (lower-case scheme and host, default ports and fragments dropped,
tracking parameters removed — UTM values were already lifted into the context at the
edge), lower-case enums, money as integer minor units with an upper-case currency.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

TRACKING_PARAMS = frozenset({"gclid", "fbclid", "msclkid", "dclid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid"})
#: ISO 4217 minor-unit exponents that are not 2.
CURRENCY_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "HUF": 2, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3, "JOD": 3}
#: Client clocks further than this from the receive time are not trusted (seconds).
MAX_CLOCK_SKEW_S = 7 * 24 * 3600
_ENVELOPE = frozenset(
    ("event_id", "type", "schema", "ts", "received_at", "anonymous_id", "user_id", "url", "edge", "context", "item_id")
)
_MONEY_TYPES = frozenset(("purchase", "add_to_cart"))


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def epoch_ms_iso(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for epoch milliseconds (events of one second share a prefix)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_prefix(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=1024)
def _received(value: str) -> tuple[datetime, str, float] | None:
    # one batch shares a handful of receive times: parse each once
    parsed = parse_ts(value)
    return (parsed, utc_iso(parsed), parsed.timestamp() * 1000) if parsed else None


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        seconds = value / 1000.0 if value > 1e11 else float(value)  # ms or s since the epoch
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@lru_cache(maxsize=65536)
def canonical_url(url: str) -> str:
    """Canonical form of ``url`` (cached: pages repeat across events); a URL that cannot
    be parsed (bad port, broken IPv6 literal…) is kept as given, truncated."""
    try:
        return _canonical(url)
    except ValueError:
        return url[:2048]


def _canonical(url: str) -> str:
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return url[:2048]
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port  # raises ValueError when out of range or not a number
    if port and ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        port = None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    ]
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


def minor_units(amount: float, currency: str) -> int:
    return int(round(amount * 10 ** CURRENCY_EXPONENT.get(currency.upper(), 2)))


def normalize(event: dict[str, Any], hub_received: str | None = None) -> dict[str, Any]:
    """A warehouse row for a validated, enriched event.

    The edge's receive time is kept when it lies within :data:`MAX_CLOCK_SKEW_S` of the
    hub's (``hub_received``): an edge may buffer events for days while offline, but a
    wrong or hostile edge clock cannot file events under arbitrary days."""
    raw_received = event.get("received_at")
    cached = _received(raw_received) if isinstance(raw_received, str) else None
    hub = _received(hub_received) if hub_received else None
    if cached and hub and abs(cached[2] - hub[2]) > MAX_CLOCK_SKEW_S * 1000:
        cached = hub
    if cached:
        received, received_iso, received_ms = cached
    elif hub:
        received, received_iso, received_ms = hub
    else:
        received = datetime.now(UTC)
        received_iso, received_ms = utc_iso(received), received.timestamp() * 1000
    raw_ts = event.get("ts")
    ts_iso: str
    if type(raw_ts) is int and raw_ts > 1e11:  # the SDK's Date.now(): the common case, kept cheap
        ts_iso = epoch_ms_iso(raw_ts) if abs(raw_ts - received_ms) <= MAX_CLOCK_SKEW_S * 1000 else received_iso
    else:
        ts = parse_ts(raw_ts)
        trusted = ts is not None and abs((ts - received).total_seconds()) <= MAX_CLOCK_SKEW_S
        # an untrusted client clock: the receive time stands in
        ts_iso = utc_iso(ts) if trusted and ts is not None else received_iso
    props = {k: v for k, v in event.items() if k not in _ENVELOPE}
    amount_minor: int | None = None
    currency: str | None = None
    kind = event["type"]
    money = (props.get("total") if kind == "purchase" else props.get("price")) if kind in _MONEY_TYPES else None
    if isinstance(money, dict):
        currency = str(money["currency"]).upper()
        amount_minor = minor_units(float(money["amount"]), currency)
        if event["type"] == "add_to_cart":
            amount_minor *= int(props.get("quantity", 1))
    for key in ("price", "total"):
        if isinstance(props.get(key), dict):
            props[key] = {
                "amount_minor": minor_units(float(props[key]["amount"]), props[key]["currency"]),
                "currency": str(props[key]["currency"]).upper(),
            }
    if isinstance(props.get("items"), list):
        for line in props["items"]:
            if isinstance(line.get("price"), dict):
                line["price"] = {
                    "amount_minor": minor_units(float(line["price"]["amount"]), line["price"]["currency"]),
                    "currency": str(line["price"]["currency"]).upper(),
                }
    context = dict(event.get("context") or {})
    device, country = context.get("device"), context.get("country")
    if isinstance(device, str):
        context["device"] = device.lower()
    if isinstance(country, str):
        context["country"] = country.upper()
    return {
        "event_id": event["event_id"],
        "type": str(kind).lower(),
        "ts": ts_iso,
        "received_at": received_iso,
        "edge": event.get("edge", ""),
        "anonymous_id": event.get("anonymous_id"),
        "user_id": event.get("user_id"),
        "item_id": event.get("item_id"),
        "url": canonical_url(event["url"]) if isinstance(event.get("url"), str) and event.get("url") else None,
        "amount_minor": amount_minor,
        "currency": currency,
        "props": orjson.dumps(props).decode() if props else None,
        "context": orjson.dumps(context).decode() if context else None,
    }
