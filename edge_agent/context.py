"""Request context → the attributes that rules see (sans-IO).

Only facts about the request itself: device class from the User-Agent, country from a
configurable geo header, the hour, path and page item. These may drive a slot even
without personalization consent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import ua_parser

from models.session import page_item

#: User-Agent strings are truncated to this length before parsing.
MAX_UA_LENGTH = 512
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_TABLET_FAMILIES = ("ipad", "kindle", "tablet", "nexus 7", "nexus 9", "nexus 10")
_MOBILE_OS = ("ios", "android", "windows phone", "blackberry os", "kaios", "firefox os")
_BOT_HINT = re.compile(r"bot|crawl|spider|slurp|headlesschrome|lighthouse", re.IGNORECASE)


@lru_cache(maxsize=8192)
def device_class(user_agent: str) -> str:
    """Classify a User-Agent as ``mobile``, ``tablet``, ``desktop`` or ``bot``."""
    ua = user_agent[:MAX_UA_LENGTH]
    if not ua:
        return "desktop"
    device = ua_parser.parse_device(ua)
    family = (device.family if device else "Other").lower()
    brand = ((device.brand or "") if device else "").lower()
    if family == "spider" or _BOT_HINT.search(ua):
        return "bot"
    if any(t in family for t in _TABLET_FAMILIES) or "tablet" in brand:
        return "tablet"
    os = ua_parser.parse_os(ua)
    os_family = (os.family if os else "").lower()
    if os_family == "android" and "mobile" not in ua.lower():
        return "tablet"
    if os_family in _MOBILE_OS or "mobi" in ua.lower():
        return "mobile"
    return "desktop"


def country(headers: Mapping[str, str], geo_header: str) -> str:
    """Upper-case ISO country from the configured header, or ``""`` when absent/invalid."""
    raw = headers.get(geo_header, "")
    return raw.upper() if _COUNTRY.match(raw) else ""


def request_attributes(headers: Mapping[str, str], path: str, geo_header: str, now: datetime | None = None) -> dict[str, Any]:
    """Attributes rules can use, from the request alone."""
    moment = now or datetime.now(UTC)
    return {
        "device": device_class(headers.get("user-agent", "")),
        "country": country(headers, geo_header),
        "hour": moment.hour,
        "weekday": moment.isoweekday(),
        "path": path,
        "item": page_item(path),
    }
